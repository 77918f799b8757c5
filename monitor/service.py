"""``wirewatch run``: everything on one machine, started and stopped as one.

Start order: Redis (embedded when no URL is configured) → rq worker processes
(:mod:`monitor.processes`) → the poller in this process. Stop order is the reverse:
the poller stops scheduling and finishes its in-flight polls, the workers finish their
current job (warm, then cold shutdown), then the embedded Redis stops (SIGTERM, which
flushes its append-only file).

Signals: SIGINT and SIGTERM are handled for the whole life of the service, start-up and
shut-down included. The first asks for the orderly stop above; a second one stops now:
every worker and its children are killed, the embedded Redis is stopped, exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from types import FrameType

import structlog

from monitor.config import Config
from monitor.poller import Poller
from monitor.processes import WorkerProcesses
from monitor.redis_server import RedisServer, RedisServerError

log = structlog.get_logger()


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
    config: Config,
    redis_url: str,
    shutdown: _Shutdown,
    workers: WorkerProcesses | None,
    server: RedisServer | None = None,
) -> None:
    stop = asyncio.Event()
    shutdown.attach(asyncio.get_running_loop(), stop)
    poller = Poller(config, redis_url)
    if workers is None:
        await poller.run(stop)
    else:
        await asyncio.gather(poller.run(stop), _supervise(workers, server, stop))


def serve_poller(config: Config, redis_url: str) -> None:
    """``wirewatch poll``: poll until SIGTERM/SIGINT (a second signal exits at once)."""
    shutdown = _Shutdown()
    shutdown.install()
    asyncio.run(_poll_until_stopped(config, redis_url, shutdown, None))


def run_service(config: Config) -> None:
    if config.source is None:
        raise ValueError("run_service needs a config loaded from a file")
    shutdown = _Shutdown()
    shutdown.install()
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
            asyncio.run(_poll_until_stopped(config, redis_url, shutdown, workers, server))
    finally:
        if workers is not None:
            workers.stop()
        if server is not None:
            server.stop()
        log.info("service_stopped")
    sys.stdout.flush()
