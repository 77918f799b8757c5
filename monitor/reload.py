"""Hot reload: notice a changed config, validate it, hand it over, log what changed.

Triggers: SIGHUP (:meth:`ConfigWatcher.request` only sets a flag, so a signal handler
may call it), or a change on disk — size, modification time or inode of the config
file or of any file its ``include`` globs match (a new file matching a glob too). The
files are looked at by :meth:`ConfigWatcher.check`, which each process calls where a
new config can be applied whole: the poller's service about once a second, an rq
worker's parent before every job and when idle (never inside a job: rq forks a fresh
work-horse per job, so the next job is the first to see the new resources). A stat of a
few files per call is all it costs; no file-watching dependency is needed.

A changed config goes through :func:`~monitor.config_loader.load_config` with the query
check, exactly as ``wirewatch check`` does. Then:

- invalid: ``config_reload_rejected`` with every error; the running config stays, and
  the same files are not read again until they change (or SIGHUP comes);
- valid: the caller's ``apply`` gets the config (settings this process cannot change
  live keep their old values, :func:`~monitor.config_diff.split_restart`, and
  ``config_reload_needs_restart`` names them); once it returned, ``config_reloaded``
  names what changed (:func:`~monitor.config_diff.diff_configs`). An ``apply`` that
  raises leaves the old config in place and logs ``config_reload_failed``.

A process with an event loop runs :func:`watch_config`: a look about every
:data:`CHECK_EVERY_S`, at once on SIGHUP (:class:`Hangup`), the new config handed to the
loop's thread. Every process reloads for itself from the same files; nothing is
coordinated through Redis. Environment variables (``${VAR}``) are read from the
process's environment, which a reload cannot change: a new secret in the environment
needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

import structlog
import yaml

from monitor.config import Config
from monitor.config_diff import RESTART_ONLY, diff_configs, split_restart
from monitor.config_loader import ConfigError, QueryCheck, load_config
from monitor.logs import configure_logging

log = structlog.get_logger()

Fingerprint = tuple[tuple[str, int, int, int], ...]
CHECK_EVERY_S = 1.0  # seconds between looks at the config files (watch_config)
SETTLE_S = 0.05  # a file still being written: look again after this long …
SETTLE_TRIES = 20  # … at most this many times


def config_files(config: Config, extra: Iterable[str] = ()) -> list[Path]:
    """The config file and every file its ``include`` globs (and ``extra`` ones) match now."""
    if config.source is None:
        return []
    base = config.source.parent
    files = [config.source]
    for pattern in dict.fromkeys([*config.include, *extra]):
        files += sorted(base.glob(pattern))
    return files


def fingerprint(config: Config, extra: Iterable[str] = ()) -> Fingerprint:
    """(path, mtime ns, size, inode) of each of :func:`config_files`; -1s if unreadable."""
    marks = []
    for path in config_files(config, extra):
        try:
            st = path.stat()
        except OSError:
            marks.append((str(path), -1, -1, -1))
        else:
            marks.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(marks)


def generation(config: Config) -> float:
    """The newest modification time of the config's files: orders configs across pollers
    (see :meth:`monitor.shared_schedule.SharedSchedule.sync`), so a change in an included
    feeds file is as new as a change in the main file."""
    return max((mark[1] / 1e9 for mark in fingerprint(config) if mark[1] >= 0), default=0.0)


class ConfigWatcher:
    """The running config of one process and the check for a new one; see the module doc.

    ``role`` names the process in the log lines; ``fixed`` lists the settings it cannot
    change live (dotted paths). Not thread-safe: call :meth:`check` from one thread.
    """

    def __init__(
        self,
        config: Config,
        *,
        role: str,
        fixed: Iterable[str] = RESTART_ONLY,
        check_query: QueryCheck | None = None,
    ) -> None:
        self.config = config  # without a source file (a test's parsed text): never reloads
        self.role = role
        self._fixed = tuple(fixed)
        self._check_query = check_query
        self._requested = False
        # None: the first check reads the files, so a change made between the first
        # load (by the CLI) and this watcher's start is not missed.
        self._seen: Fingerprint | None = None
        # The include globs of a rejected file that the running config lacks: the fix
        # may come in one of those files, so they are watched until a config is applied.
        self._pending_includes: tuple[str, ...] = ()

    def request(self) -> None:
        """Reload at the next :meth:`check` even if no file changed (SIGHUP)."""
        self._requested = True

    def check(self, apply: Callable[[Config], object]) -> bool:
        """Reload if asked to or if a file changed; True if a new config was applied."""
        forced, self._requested = self._requested, False
        if self.config.source is None:
            return False
        seen = fingerprint(self.config, self._pending_includes)
        if not forced and seen == self._seen:
            return False
        if not forced and self._seen is not None:
            seen = _settled(self.config, seen, self._pending_includes)
        first, self._seen = self._seen is None, seen
        trigger = "sighup" if forced else "file"
        source = self.config.source
        try:
            new = load_config(source, check_query=self._check_query)
        except ConfigError as exc:
            self._pending_includes = _include_patterns(source)
            self._seen = fingerprint(self.config, self._pending_includes)
            log.error(
                "config_reload_rejected",
                role=self.role,
                source=str(source),
                trigger=trigger,
                errors=[str(problem) for problem in exc.problems],
                kept="the running config",
            )
            return False
        self._pending_includes = ()
        applied, restart = split_restart(self.config, new, self._fixed)
        changes = diff_configs(self.config, applied)
        if applied.include != self.config.include:
            self._seen = fingerprint(applied)  # other globs: other files to watch
        if restart:
            log.warning("config_reload_needs_restart", role=self.role, settings=restart)
        if not changes:
            # A touched file, or the watcher's first look: say so only when asked.
            quiet = first or not forced
            (log.debug if quiet else log.info)("config_unchanged", role=self.role, trigger=trigger)
            return False
        started = time.monotonic()
        try:
            apply(applied)
        except Exception as exc:  # the old config keeps running: say why, don't die
            log.exception("config_reload_failed", role=self.role, reason=str(exc))
            return False
        if applied.logging != self.config.logging:
            configure_logging(applied.logging.level, applied.logging.format)
        self.config = applied
        log.info(
            "config_reloaded",
            role=self.role,
            pid=os.getpid(),
            trigger=trigger,
            took_ms=round((time.monotonic() - started) * 1000, 1),
            **changes.as_fields(),
        )
        return True


def _include_patterns(source: Path) -> tuple[str, ...]:
    """The ``include`` globs a config file asks for, read without validating it."""
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return ()
    patterns = data.get("include") if isinstance(data, dict) else None
    if not isinstance(patterns, list):
        return ()
    return tuple(p for p in patterns if isinstance(p, str))


def _settled(config: Config, seen: Fingerprint, extra: Iterable[str] = ()) -> Fingerprint:
    """Wait (briefly, bounded) until the files stop changing: an editor that writes a
    file in several steps must not make us read half of it."""
    for _ in range(SETTLE_TRIES):
        time.sleep(SETTLE_S)
        again = fingerprint(config, extra)
        if again == seen:
            break
        seen = again
    return seen


class Hangup:
    """SIGHUP as a reload request: a flag, and a wake-up for :func:`watch_config`.

    Installed first thing, so a SIGHUP during start-up is a reload request rather than
    the default action (terminate).
    """

    def __init__(self) -> None:
        self._pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def install(self) -> None:
        signal.signal(signal.SIGHUP, self._handle)

    def attach(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._loop, self._event = loop, event

    def take(self) -> bool:
        pending, self._pending = self._pending, False
        return pending

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self._pending = True
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)


async def watch_config(
    watcher: ConfigWatcher,
    hangup: Hangup,
    apply_here: Callable[[Config], object],
    stop: asyncio.Event,
    *,
    on_hangup: Callable[[], list[int]] = list,
) -> None:
    """Until ``stop``: look for a new config about every :data:`CHECK_EVERY_S` (at once on
    SIGHUP) and give it to ``apply_here`` on the event loop's thread.

    ``on_hangup`` passes the signal on (``wirewatch run``: to its workers) and returns
    the pids it reached, for the log line.
    """
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    hangup.attach(loop, wake)

    def apply(config: Config) -> None:  # on the checking thread
        loop.call_soon_threadsafe(apply_here, config)

    while not stop.is_set():
        wake.clear()
        if hangup.take():
            forwarded = on_hangup()
            log.info("config_reload_requested", signal="SIGHUP", forwarded_to=forwarded)
            watcher.request()
        # Off the loop: reading and checking a large config (1,000 rules) takes a while.
        await asyncio.to_thread(watcher.check, apply)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(stop, wake), timeout=CHECK_EVERY_S)


async def _first(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
