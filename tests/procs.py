"""Real wirewatch processes for tests that break things: start them, read their logs, kill them.

Role: the harness of ``test_faults.py`` (and any test that needs ``wirewatch run``,
``poll``, ``work`` or an ``alerts`` command as a real process).

* :class:`Proc`: one ``python -m monitor --config X <command>`` subprocess, its stdout and
  stderr appended to a log file of its own. :meth:`Proc.events` parses the JSON log lines
  (``logging.format: json``); :meth:`Proc.kill` SIGKILLs it and every process below it
  (an rq worker's work-horse and scheduler, the poller's parse process, the embedded
  Redis of ``wirewatch run``), as a crash or the OOM killer would.
* :class:`Procs` (fixture ``procs``): starts :class:`Proc` values and runs CLI commands
  to completion; at teardown stops everything it started, newest first, even when the
  test failed.
* :func:`kill_tree`, :func:`wait_until`: SIGKILL a process tree; poll a condition with a
  deadline.
* :class:`ReceiverOnPort`: a :class:`receivers.WebhookReceiver` on a port chosen in
  advance, so wirewatch can be pointed at a port where nothing listens yet.

Invariants: every wait is bounded; a process is stopped with SIGTERM (its own orderly
shutdown) and, if that takes too long, SIGKILL to the whole tree as it was before the
SIGTERM, so no orphan (a worker in a session of its own, an embedded Redis) outlives
the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from aiohttp import web
from receivers import WebhookReceiver

T = TypeVar("T")
STOP_TIMEOUT_S = 20.0
_CLEAN_ENV = ("REDIS_URL", "WIREWATCH_CONFIG")


def wait_until(condition: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """The first truthy value of ``condition()``; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and all its descendants; wait until they are gone.

    The tree is frozen first (SIGSTOP, top down, until no new member shows up), so a
    process that forks at that moment (an rq worker starting a work-horse) cannot leave
    an orphan behind that would finish the job the test meant to interrupt.
    """
    try:
        family = {pid: psutil.Process(pid)}
    except psutil.NoSuchProcess:
        return []
    frozen: set[int] = set()
    while len(frozen) < len(family):
        for member_pid, member in list(family.items()):
            if member_pid in frozen:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                member.suspend()
                _wait_stopped(member)
                family.update((kid.pid, kid) for kid in member.children())
            frozen.add(member_pid)
    for member in family.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(list(family.values()), timeout=10)
    return sorted(family)


def _wait_stopped(process: psutil.Process, timeout: float = 1.0) -> None:
    """SIGSTOP takes effect asynchronously; wait until it has (bounded)."""
    deadline = time.monotonic() + timeout
    while process.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
        if time.monotonic() > deadline:
            return
        time.sleep(0.001)


class Proc:
    """One wirewatch command as a real process; see the module docstring."""

    def __init__(self, config: Path, command: list[str], log: Path, env: dict[str, str]) -> None:
        self.command = command
        self.log = log
        full_env = {k: v for k, v in os.environ.items() if k not in _CLEAN_ENV}
        full_env.update(env)
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(config), *command],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log events written so far (only those named ``name`` if given)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue  # rq's and Python's plain-text lines on stderr
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    found.append(event)
        return found

    def wait_event(
        self, name: str, timeout: float, count: int = 1, **fields: Any
    ) -> list[dict[str, Any]]:
        """The events ``name`` whose ``fields`` match, once there are ``count`` of them."""

        def matching() -> list[dict[str, Any]]:
            found = [e for e in self.events(name) if all(e.get(k) == v for k, v in fields.items())]
            if not self.alive() and len(found) < count:
                raise AssertionError(f"{self.command} exited: {self.tail()}")
            return found if len(found) >= count else []

        return wait_until(matching, timeout, f"{count} {name} event(s) {fields or ''}")

    def children(self, command: str) -> list[psutil.Process]:
        """Direct children whose command line ends with ``command`` (e.g. ``"work"``)."""
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        found = []
        for kid in kids:
            with contextlib.suppress(psutil.Error):
                if kid.cmdline()[-1:] == [command]:
                    found.append(kid)
        return found

    def kill(self) -> list[int]:
        """SIGKILL the process and all below it; returns the pids killed."""
        killed = kill_tree(self.pid)
        self.process.wait(10)
        return killed

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait ``timeout`` s, then SIGKILL whatever is left of the tree."""
        if not self.alive():
            return self.process.returncode
        try:
            family = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            for member in family:  # e.g. a worker that its dying parent left behind
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


class Procs:
    """The processes of one test, each logging to ``<folder>/<name>.log``."""

    def __init__(self, folder: Path, config: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.config = config
        self.env = dict(env or {})
        self._started: list[Proc] = []
        self._count = 0

    def start(self, *command: str, env: dict[str, str] | None = None) -> Proc:
        """Start ``wirewatch <command...>`` with the config and ``self.env`` (+ ``env``)."""
        self._count += 1
        log = self.folder / f"{self._count:02d}-{command[0]}.log"
        proc = Proc(self.config, list(command), log, {**self.env, **(env or {})})
        self._started.append(proc)
        return proc

    def cli(self, *command: str, timeout: float = 30) -> str:
        """Run ``wirewatch <command...>`` to completion; its stdout (AssertionError if it fails)."""
        env = {k: v for k, v in os.environ.items() if k not in _CLEAN_ENV}
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "--config", str(self.config), *command],
            env={**env, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"wirewatch {' '.join(command)}: {done.stderr[-2000:]}"
        return done.stdout

    def stop_all(self) -> None:
        for proc in reversed(self._started):
            proc.stop()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """A :class:`Procs` on ``tmp_path/wirewatch.yaml`` (the test writes it); all stopped after.

    Request it after the servers the processes talk to, so it is torn down first.
    """
    started = Procs(tmp_path, tmp_path / "wirewatch.yaml")
    yield started
    started.stop_all()


class ReceiverOnPort(WebhookReceiver):
    """A :class:`WebhookReceiver` on ``port``: nothing answers there until :meth:`start`.

    It mirrors ``WebhookReceiver.start`` with a fixed port instead of port 0.
    """

    def __init__(self, port: int, secret: str | None = None) -> None:
        super().__init__(secret)
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"

    def start(self) -> ReceiverOnPort:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, sock).start())
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self
