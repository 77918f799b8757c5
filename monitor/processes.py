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

Hot reload: :meth:`WorkerProcesses.resize` follows a new ``workers.processes`` — more
workers start at once; a surplus worker gets SIGTERM (warm shutdown: it finishes its
job) and is reaped by the supervision pass, cold-stopped and killed on the same
schedule as above if it takes too long. :meth:`WorkerProcesses.signal_ready` forwards
SIGHUP only to workers that handle it already: until a starting worker has installed
its handler, SIGHUP would kill it (and it reads the newest config as it starts anyway).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from monitor.child_death import die_with_parent

log = structlog.get_logger()

GRACE_S = 30.0
COLD_GRACE_S = 5.0
MAX_RESTART_PAUSE_S = 60.0
CALM_S = 300.0


@dataclass
class _Retiring:
    """A worker asked to stop because ``workers.processes`` went down."""

    process: subprocess.Popen[bytes]
    since: float
    cold: bool = False


class WorkerProcesses:
    def __init__(self, config_path: Path, redis_url: str, count: int) -> None:
        self._args = [sys.executable, "-m", "monitor", "--config", str(config_path), "work"]
        self._env = {**os.environ, "REDIS_URL": redis_url}
        self._count = count
        self._processes: list[subprocess.Popen[bytes]] = []
        self._retiring: list[_Retiring] = []
        self._restarts = 0
        self._next_restart = 0.0

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def start(self) -> None:
        self._processes = [self._spawn() for _ in range(self._count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._args,
            env=self._env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.info("worker_process_started", pid=process.pid)
        return process

    def resize(self, count: int) -> None:
        """Run ``count`` workers from now on (see the module docstring)."""
        if count == self._count:
            return
        log.info("worker_processes_resized", previous=self._count, count=count)
        self._count = count
        while len(self._processes) < count:
            self._processes.append(self._spawn())
        while len(self._processes) > count:
            process = self._processes.pop()
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)  # warm: the current job finishes
            self._retiring.append(_Retiring(process, time.monotonic()))
            log.info("worker_process_retiring", pid=process.pid)

    def signal_ready(self, signum: int) -> list[int]:
        """Send ``signum`` to every running worker that handles it; their pids."""
        sent = []
        for process in self._processes:
            if process.poll() is None and _catches(process.pid, signum):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)
                    sent.append(process.pid)
        return sent

    def _reap_retiring(self, now: float) -> None:
        for retiring in list(self._retiring):
            process = retiring.process
            if process.poll() is not None:
                self._retiring.remove(retiring)
                log.info("worker_process_retired", pid=process.pid, returncode=process.returncode)
            elif not retiring.cold and now - retiring.since > GRACE_S:
                retiring.cold = True
                log.warning("worker_process_cold_shutdown", pids=[process.pid], grace_s=GRACE_S)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            elif now - retiring.since > GRACE_S + COLD_GRACE_S:
                log.warning("worker_process_killed", pid=process.pid)
                kill_tree(process.pid)
                process.wait()
                self._retiring.remove(retiring)

    def restart_dead(self) -> None:
        """Replace a worker that exited, reap retired ones; called about once a second."""
        now = time.monotonic()
        self._reap_retiring(now)
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
        # Retiring workers had their SIGTERM already: another would make it a cold one.
        alive += [r.process for r in self._retiring if r.process.poll() is None]
        self._retiring = []
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
        every = self._processes + [retiring.process for retiring in self._retiring]
        for process in every:
            kill_tree(process.pid)
        for process in every:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        self._processes, self._retiring = [], []


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


def _catches(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` (Linux: ``SigCgt`` in its status);
    True where that cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return True


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
