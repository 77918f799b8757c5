"""The ``wirewatch work`` child processes of ``wirewatch run``: started, supervised, stopped.

Each worker runs in a session of its own, so a Ctrl-C in the terminal reaches only
``wirewatch run``, which then stops the workers once, in order:

1. SIGTERM — rq's warm shutdown: the worker finishes its current job and exits;
2. after ``grace`` seconds, SIGTERM again — rq's cold shutdown: it kills the job's
   work-horse and exits;
3. a few seconds later, SIGKILL to the worker and every process below it (the
   work-horse and rq's scheduler, which rq puts in process groups of their own).

A worker that dies while the service runs is restarted, with a growing pause when it
keeps dying (a broken config or an unreachable Redis must not become a fork loop).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger()

GRACE_S = 30.0
COLD_GRACE_S = 5.0
MAX_RESTART_PAUSE_S = 60.0
CALM_S = 300.0


class WorkerProcesses:
    def __init__(self, config_path: Path, redis_url: str, count: int) -> None:
        self._args = [sys.executable, "-m", "monitor", "--config", str(config_path), "work"]
        self._env = {**os.environ, "REDIS_URL": redis_url}
        self._count = count
        self._processes: list[subprocess.Popen[bytes]] = []
        self._restarts = 0
        self._next_restart = 0.0

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def start(self) -> None:
        self._processes = [self._spawn() for _ in range(self._count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._args, env=self._env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.info("worker_process_started", pid=process.pid)
        return process

    def restart_dead(self) -> None:
        """Replace a worker that exited; called about once a second by the service."""
        now = time.monotonic()
        if now < self._next_restart:
            return
        if now - self._next_restart > CALM_S:
            self._restarts = 0  # a long quiet spell: back to restarting at once
        for index, process in enumerate(self._processes):
            if process.poll() is not None:
                pause = min(MAX_RESTART_PAUSE_S, 2.0**self._restarts)
                log.warning(
                    "worker_process_exited",
                    pid=process.pid,
                    returncode=process.returncode,
                    next_restart_in_s=pause,
                )
                self._processes[index] = self._spawn()
                self._restarts += 1
                self._next_restart = now + pause
                return

    def stop(self, grace: float = GRACE_S) -> None:
        """Warm shutdown, then cold, then SIGKILL to whatever is left (see the module doc)."""
        alive = [process for process in self._processes if process.poll() is None]
        _signal_all(alive, signal.SIGTERM)
        alive = _wait_all(alive, grace)
        if alive:
            log.warning("worker_process_cold_shutdown", pids=[p.pid for p in alive], grace_s=grace)
            _signal_all(alive, signal.SIGTERM)
            alive = _wait_all(alive, COLD_GRACE_S)
        for process in alive:
            log.warning("worker_process_killed", pid=process.pid)
            kill_tree(process.pid)
            process.wait()
        self._processes = []

    def kill(self) -> None:
        """Forced stop: SIGKILL every worker and everything below it, now."""
        for process in self._processes:
            kill_tree(process.pid)
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        self._processes = []


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (found before the first kill)."""
    try:
        root = psutil.Process(pid)
        family = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def _signal_all(processes: list[subprocess.Popen[bytes]], signum: int) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


def _wait_all(
    processes: list[subprocess.Popen[bytes]], timeout: float
) -> list[subprocess.Popen[bytes]]:
    """Wait until all exit or ``timeout`` passes; return those still running."""
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    return [process for process in processes if process.poll() is None]
