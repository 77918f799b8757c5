"""``wirewatch run``: everything on one machine, started and stopped as one.

Start order: Redis (embedded when no URL is configured) → rq worker processes
(:mod:`monitor.processes`) → the poller in this process. Stop order is the reverse:
the poller stops scheduling and finishes its in-flight polls, the workers finish their
current job (warm, then cold shutdown), then the embedded Redis stops (SIGTERM, which
flushes its append-only file).

Signals: SIGINT and SIGTERM are handled for the whole life of the service, start-up and
shut-down included. The first asks for the orderly stop above; a second one stops now:
every worker and its children are killed, the embedded Redis is stopped, exit code 1.

Hot reload (:mod:`monitor.reload`): about once a second the service looks at the config
files; on a change, or on SIGHUP, it validates the new config and hands it to the
poller (:meth:`~monitor.poller.Poller.reconfigure`: new claims use it, polls in flight
finish with the old one) and, in ``wirewatch run``, resizes the worker processes to
``workers.processes``. SIGHUP is forwarded to every worker that has installed its own
handler (one still starting reads the newest config anyway); each worker watches the
files too and reloads between jobs (:mod:`workers.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from types import FrameType

import structlog
from aiohttp import web

from monitor.api_state import reload_api
from monitor.config import Config
from monitor.config_diff import POLLER_RESTART_ONLY, RESTART_ONLY
from monitor.config_loader import QueryCheck
from monitor.poller import Poller
from monitor.processes import WorkerProcesses
from monitor.redis_server import RedisServer, RedisServerError
from monitor.reload import ConfigWatcher, Hangup, watch_config

log = structlog.get_logger()

StartApi = Callable[[Config, str], Awaitable[web.AppRunner]]


class ApiStartError(RuntimeError):
    """``wirewatch run`` could not serve the HTTP API it was asked to serve."""


def redis_url_for(config: Config) -> str:
    """The configured Redis URL, else ``$REDIS_URL``, else empty (start an embedded one)."""
    return config.redis.url or os.environ.get("REDIS_URL", "")


class _Shutdown:
    """SIGINT/SIGTERM: the first sets ``requested``; the second forces an exit."""

    def __init__(self) -> None:
        self.requested = False
        self.workers: WorkerProcesses | None = None
        self.server: RedisServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def attach(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._loop, self._event = loop, event
        if self.requested:
            event.set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            log.warning("shutdown_forced", signal=name)
            if self.workers is not None:
                self.workers.kill()
            if self.server is not None:
                self.server.stop()
            os._exit(1)
        self.requested = True
        log.info("shutdown_requested", signal=name)
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)


async def _supervise(
    workers: WorkerProcesses, server: RedisServer | None, stop: asyncio.Event
) -> None:
    """Restart what dies: the embedded Redis (from its AOF) and worker processes."""
    while not stop.is_set():
        if server is not None:
            try:
                server.restart_if_dead()
            except RedisServerError as exc:
                log.error("redis_embedded_restart_failed", reason=str(exc))
        workers.restart_dead()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def _poll_until_stopped(
    watcher: ConfigWatcher,
    hangup: Hangup,
    redis_url: str,
    shutdown: _Shutdown,
    workers: WorkerProcesses | None,
    server: RedisServer | None = None,
    start_api: StartApi | None = None,
) -> None:
    stop = asyncio.Event()
    shutdown.attach(asyncio.get_running_loop(), stop)
    api = None
    if start_api is not None:
        try:
            api = await start_api(watcher.config, redis_url)
        except OSError as exc:  # the port is taken, the address is not ours, ...
            host, port = watcher.config.api.host, watcher.config.api.port
            raise ApiStartError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        poller = Poller(watcher.config, redis_url)

        def apply_here(config: Config) -> None:  # on the event loop's thread
            poller.reconfigure(config)
            if workers is not None:
                workers.resize(config.workers.processes)
            if api is not None:
                reload_api(api.app, config)

        def forward() -> list[int]:
            return workers.signal_ready(signal.SIGHUP) if workers is not None else []

        tasks = [
            poller.run(stop),
            watch_config(watcher, hangup, apply_here, stop, on_hangup=forward),
        ]
        if workers is not None:
            tasks.append(_supervise(workers, server, stop))
        await asyncio.gather(*tasks)
    finally:
        if api is not None:
            await api.cleanup()


def _watcher(
    config: Config, role: str, check_query: QueryCheck | None, fixed: Iterable[str]
) -> tuple[ConfigWatcher, Hangup]:
    hangup = Hangup()
    hangup.install()
    watcher = ConfigWatcher(
        config, role=role, fixed=(*RESTART_ONLY, *fixed), check_query=check_query
    )
    return watcher, hangup


def serve_poller(config: Config, redis_url: str, check_query: QueryCheck | None = None) -> None:
    """``wirewatch poll``: poll until SIGTERM/SIGINT (a second signal exits at once).

    ``check_query`` validates rules on a reload, as ``wirewatch check`` does (the CLI
    passes it: ``monitor`` does not import the rule compiler).
    """
    shutdown = _Shutdown()
    shutdown.install()
    watcher, hangup = _watcher(config, "poller", check_query, POLLER_RESTART_ONLY)
    asyncio.run(_poll_until_stopped(watcher, hangup, redis_url, shutdown, None))


def run_service(
    config: Config, check_query: QueryCheck | None = None, start_api: StartApi | None = None
) -> None:
    """``wirewatch run``; ``check_query`` as for :func:`serve_poller`; ``start_api`` serves
    the HTTP API and dashboard beside the poller (the CLI passes it when ``api.enabled``)."""
    if config.source is None:
        raise ValueError("run_service needs a config loaded from a file")
    shutdown = _Shutdown()
    shutdown.install()
    fixed = (*POLLER_RESTART_ONLY, "redis.data_dir", "api")
    watcher, hangup = _watcher(config, "service", check_query, fixed)
    redis_url = redis_url_for(config)
    server: RedisServer | None = None
    workers: WorkerProcesses | None = None
    try:
        if not redis_url:
            server = shutdown.server = RedisServer(config.data_dir()).start()
            redis_url = server.url
            log.info("redis_embedded", data_dir=str(server.data_dir), pid=server.pid)
        workers = shutdown.workers = WorkerProcesses(
            config.source, redis_url, config.workers.processes
        )
        workers.start()
        log.info(
            "service_started",
            feeds=sum(feed.enabled for feed in config.feeds),
            rules=sum(rule.enabled for rule in config.rules),
            workers=config.workers.processes,
            worker_pids=workers.pids,
        )
        if not shutdown.requested:
            asyncio.run(
                _poll_until_stopped(
                    watcher, hangup, redis_url, shutdown, workers, server, start_api
                )
            )
    finally:
        if workers is not None:
            workers.stop()
        if server is not None:
            server.stop()
        log.info("service_stopped")
    sys.stdout.flush()
