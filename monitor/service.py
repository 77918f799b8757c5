"""``wirewatch run``: everything on one machine, started and stopped as one.

Start order: Redis (embedded when no URL is configured) → rq worker processes → the
poller in this process. Stop order is the reverse: the poller stops scheduling and
finishes its in-flight polls, workers get SIGTERM (rq's warm shutdown: the current
job completes) and a grace period before SIGKILL, then the embedded Redis is stopped
(SIGTERM, which flushes its append-only file).

Worker processes run in their own session, so a Ctrl-C in the terminal reaches only
this process, which then stops them once, in order. A worker that dies while the
service runs is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import structlog

from monitor.config import Config
from monitor.poller import Poller
from monitor.redis_server import RedisServer

log = structlog.get_logger()

GRACE_S = 20.0


def redis_url_for(config: Config) -> str:
    """The configured Redis URL, else ``$REDIS_URL``, else empty (start an embedded one)."""
    return config.redis.url or os.environ.get("REDIS_URL", "")


class WorkerProcesses:
    """``wirewatch work`` child processes, supervised."""

    def __init__(self, config_path: Path, redis_url: str, count: int) -> None:
        self._args = [sys.executable, "-m", "monitor", "--config", str(config_path), "work"]
        self._env = {**os.environ, "REDIS_URL": redis_url}
        self._count = count
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self._processes = [self._spawn() for _ in range(self._count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._args, env=self._env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.info("worker_process_started", pid=process.pid)
        return process

    def restart_dead(self) -> None:
        for index, process in enumerate(self._processes):
            if process.poll() is not None:
                log.warning("worker_process_exited", pid=process.pid, returncode=process.returncode)
                self._processes[index] = self._spawn()

    def stop(self, grace: float = GRACE_S) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # rq: warm shutdown
        for process in self._processes:
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("worker_process_killed", pid=process.pid, grace_s=grace)
                process.kill()
                process.wait()
        self._processes = []


async def _supervise(workers: WorkerProcesses, stop: asyncio.Event) -> None:
    while not stop.is_set():
        workers.restart_dead()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def serve_poller(
    config: Config, redis_url: str, workers: WorkerProcesses | None = None
) -> None:
    """Poll until SIGTERM/SIGINT (a second signal exits at once); supervise ``workers``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():  # a second signal: stop now
            log.warning("shutdown_forced", signal=signal.Signals(signum).name)
            os._exit(1)
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    poller = Poller(config, redis_url)
    if workers is None:
        await poller.run(stop)
    else:
        await asyncio.gather(poller.run(stop), _supervise(workers, stop))


def run_service(config: Config) -> None:
    if config.source is None:
        raise ValueError("run_service needs a config loaded from a file")
    redis_url = redis_url_for(config)
    server: RedisServer | None = None
    if not redis_url:
        server = RedisServer(config.data_dir()).start()
        redis_url = server.url
        log.info("redis_embedded", data_dir=str(server.data_dir), pid=server.pid)
    workers = WorkerProcesses(config.source, redis_url, config.workers.processes)
    try:
        workers.start()
        log.info(
            "service_started",
            feeds=sum(feed.enabled for feed in config.feeds),
            rules=sum(rule.enabled for rule in config.rules),
            workers=config.workers.processes,
        )
        asyncio.run(serve_poller(config, redis_url, workers))
    finally:
        workers.stop()
        if server is not None:
            server.stop()
        log.info("service_stopped")
