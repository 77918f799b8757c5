"""The moving parts of the end-to-end benchmark, other than the farm.

Role: the I/O shell of :mod:`bench.e2e`:

- :class:`Receiver`: a webhook endpoint (aiohttp, in a thread of the benchmark process,
  on 127.0.0.1) that records each request's arrival time (``time.time()``, the clock the
  farm stamps publications with) and its JSON body. It answers 204 at once and does not
  verify signatures (the receiver's CPU is not the pipeline's).
- :func:`write_config`: the wirewatch YAML config of a run: N farm feeds polled every
  second (``interval``, ``min_interval`` and ``max_interval`` 1, so neither the feed's
  ``<ttl>`` nor its ``max-age`` slows polling down), M rules on one signed webhook
  channel, the private Redis.
- :class:`Service`: a real ``wirewatch poll`` or ``wirewatch work`` subprocess whose JSON
  log lines go to a file; :func:`read_events` reads the lines of one event name back.
- CPU accounting: :func:`tree_cpu` (a process and its children, the exited ones too —
  rq's work-horses are waited for, so their CPU lands in the worker's ``cutime``) and
  :func:`busy_cpu` (the whole machine), to tell our CPU from the neighbours'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psutil
import yaml
from aiohttp import web

from bench.machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
WIREWATCH = ROOT / ".venv" / "bin" / "wirewatch"


@dataclass(frozen=True)
class Arrival:
    """One webhook as received: when, and the alert it carried."""

    at: float
    body: dict[str, Any]


class Receiver:
    """A webhook endpoint in a background thread; ``arrivals`` grows as alerts come."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, sock, backlog=1024).start())
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver")
        self._thread.daemon = True
        self._thread.start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    def stop(self) -> None:
        if self._thread is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def since(self, start: int) -> list[Arrival]:
        with self._lock:
            return self.arrivals[start:]

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.time()
        body = await request.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        with self._lock:
            self.arrivals.append(Arrival(at, parsed if isinstance(parsed, dict) else {}))
        return web.Response(status=204)


def write_config(
    path: Path,
    *,
    base: str,
    feeds: int,
    redis_url: str,
    hook_url: str,
    secret: str,
    rules: list[tuple[str, str]],
    term_sets: dict[str, list[str]],
    fork: bool = False,
) -> Path:
    """The YAML config every wirewatch process of the run reads."""
    config = {
        "redis": {"url": redis_url, "prefix": "e2e:"},
        "poller": {"interval": 1, "min_interval": 1, "max_interval": 1, "concurrency": 50},
        "workers": {"fork": fork, "ner": {"enabled": True, "model": "auto"}},
        "logging": {"level": "info", "format": "json"},
        "feeds": [
            {
                "url": f"{base}/feeds/{n}.xml",
                "name": f"wire {n}",
                "interval": 1,
                "min_interval": 1,
                "max_interval": 1,
            }
            for n in range(feeds)
        ],
        "channels": {"hook": {"type": "webhook", "url": hook_url, "secret": secret}},
        "term_sets": term_sets,
        "rules": [{"id": rid, "query": query, "channels": ["hook"]} for rid, query in rules],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=200), encoding="utf-8")
    return path


class Service:
    """One ``wirewatch <command>`` subprocess logging JSON lines to ``log``."""

    def __init__(self, command: str, config: Path, redis_url: str, log: Path) -> None:
        self.command, self.log = command, log
        self._out: IO[bytes] = log.open("ab")
        env = os.environ | {"REDIS_URL": redis_url, "WIREWATCH_CONFIG": str(config)}
        self.process = subprocess.Popen(  # noqa: S603 - our own entry point
            [str(WIREWATCH), "--config", str(config), command],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, event: str, timeout: float = 120.0) -> None:
        """Until the log has a line with ``event`` (e.g. ``worker_started``)."""
        deadline = time.monotonic() + timeout
        while not read_events(self.log, event):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"wirewatch {self.command} did not log {event}: {tail}")
            time.sleep(0.1)

    def stop(self, timeout: float = 40.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


def read_events(log: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``log`` whose event is ``event``, with ``at`` (unix time)."""
    out = []
    with contextlib.suppress(FileNotFoundError), log.open("rb") as handle:
        for line in handle:
            if event.encode() not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                record["at"] = datetime.fromisoformat(record["timestamp"]).timestamp()
                out.append(record)
    return out


class LogTail:
    """The ``event`` lines of a growing JSON log, read incrementally (cheap to poll)."""

    def __init__(self, log: Path, event: str) -> None:
        self.log, self.event = log, event
        self.events: list[dict[str, Any]] = []
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        with contextlib.suppress(FileNotFoundError), self.log.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
            end = data.rfind(b"\n") + 1  # a line still being written waits for next time
            self._offset += end
            for line in data[:end].splitlines():
                if self.event.encode() not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == self.event:
                    record["at"] = datetime.fromisoformat(record["timestamp"]).timestamp()
                    self.events.append(record)
        return self.events


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live children and the children it has waited for."""
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = child.cpu_times()
                total += t.user + t.system
    except psutil.Error:
        return 0.0
    return float(total)


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model("unknown"),
        "load": [round(x, 2) for x in os.getloadavg()],
    }
