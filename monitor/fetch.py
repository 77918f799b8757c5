"""Fetch a feed's bytes: conditional GET over HTTP(S), or a read of a ``file:`` URL.

Role: the I/O edge of the poller towards publishers. HTTP semantics are returned as
data (:class:`FetchResult`: status, validators, ``Retry-After``, body); deciding when to
poll again is :mod:`monitor.schedule`'s job.

Inputs: a shared ``aiohttp.ClientSession`` (owned by the poller), a URL, the validators
from the last successful poll, and :class:`FetchLimits` (timeouts, byte cap).

Outputs: a :class:`FetchResult` for 2xx and 304 (``body`` is ``None`` on 304), else a
:class:`~monitor.poll_errors.FetchError` whose ``reason`` an operator can read
("DNS lookup failed for host x", "connection refused by x:80", "timed out after 30s",
"HTTP 503 Service Unavailable", "response larger than N bytes").

Invariants:

- No more than ``max_bytes`` of body are ever held: the body is streamed and the read
  stops as soon as the cap is passed (the cap applies after decompression, so a small
  gzip bomb is caught too). ``file:`` reads honour the same cap.
- Files are read in a worker thread; nothing here blocks the event loop.
- Every foreign exception is wrapped in ``FetchError`` (``raise … from exc``).
- ``file:`` URLs: ``file:relative/x.xml`` resolves against ``base_dir`` (the config
  file's folder); ``file:/abs/x.xml`` and ``file:///abs/x.xml`` are absolute.
"""

from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from monitor.config import PollerSettings
from monitor.poll_errors import FetchError

_CHUNK = 64 * 1024
# Statuses worth retrying soon; any other 4xx is the publisher's configuration problem
# (still retried with backoff by the poller, but reported as not transient).
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True, slots=True)
class FetchLimits:
    connect_timeout: float = 10.0
    total_timeout: float = 30.0
    max_bytes: int = 10_000_000
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: PollerSettings) -> FetchLimits:
        return cls(
            connect_timeout=settings.connect_timeout,
            total_timeout=settings.total_timeout,
            max_bytes=settings.max_bytes,
        )


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One successful fetch. ``url`` is the final URL (after redirects)."""

    status: int
    body: bytes | None
    url: str
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    retry_after: float | None = None
    elapsed: float = 0.0

    @property
    def not_modified(self) -> bool:
        return self.status == 304


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    limits: FetchLimits = FetchLimits(),  # frozen, so one shared default is safe
    base_dir: Path | None = None,
) -> FetchResult:
    """Fetch ``url``; see the module docstring for results and errors."""
    started = time.monotonic()
    if urlsplit(url).scheme.lower() == "file":
        path = file_path(url, base_dir)
        body = await asyncio.to_thread(_read_file, path, limits.max_bytes)
        return FetchResult(200, body, path.as_uri(), elapsed=time.monotonic() - started)
    return await _fetch_http(session, url, etag, last_modified, limits, started)


def file_path(url: str, base_dir: Path | None) -> Path:
    """The local path of a ``file:`` URL; relative paths resolve against ``base_dir``."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(
            f"file: URL names host {parts.netloc!r}; use file:relative/path or file:///abs/path",
            transient=False,
        )
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            body = handle.read(max_bytes + 1)  # one byte more tells "exactly N" from "more"
    except FileNotFoundError as exc:
        raise FetchError(f"file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise FetchError(f"is a directory, not a feed file: {path}", transient=False) from exc
    except PermissionError as exc:
        raise FetchError(f"permission denied reading {path}") from exc
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(body) > max_bytes:
        raise FetchError(f"response larger than {max_bytes} bytes", transient=False)
    return body


async def _fetch_http(
    session: aiohttp.ClientSession,
    url: str,
    etag: str | None,
    last_modified: str | None,
    limits: FetchLimits,
    started: float,
) -> FetchResult:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    timeout = aiohttp.ClientTimeout(
        total=limits.total_timeout,
        connect=limits.connect_timeout,
        sock_connect=limits.connect_timeout,
    )
    host = urlsplit(url).hostname or url
    try:
        async with session.get(
            url, headers=headers, timeout=timeout, max_redirects=limits.max_redirects
        ) as response:
            return await _read_response(response, etag, last_modified, limits, started)
    except FetchError:
        raise
    except aiohttp.ClientConnectorDNSError as exc:
        raise FetchError(f"DNS lookup failed for host {host}") from exc
    except aiohttp.ClientSSLError as exc:
        raise FetchError(f"TLS error with {host}: {exc}") from exc
    except aiohttp.ClientConnectorError as exc:
        where = f"{exc.host}:{exc.port}"
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        if refused or exc.os_error.errno == errno.ECONNREFUSED:
            raise FetchError(f"connection refused by {where}") from exc
        raise FetchError(f"cannot connect to {where}: {exc.os_error.strerror or exc}") from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise FetchError(f"connect to {host} timed out after {limits.connect_timeout:g}s") from exc
    except TimeoutError as exc:  # the total timeout, or a read that stalled past it
        raise FetchError(f"timed out after {limits.total_timeout:g}s") from exc
    except aiohttp.TooManyRedirects as exc:
        raise FetchError(f"more than {limits.max_redirects} redirects", transient=False) from exc
    except aiohttp.InvalidURL as exc:
        raise FetchError(f"invalid URL {url!r}", transient=False) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise FetchError(f"{host} closed the connection without a response") from exc
    except aiohttp.ClientPayloadError as exc:
        raise FetchError(f"response body broken off: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise FetchError(f"HTTP client error: {type(exc).__name__}: {exc}") from exc


async def _read_response(
    response: aiohttp.ClientResponse,
    etag: str | None,
    last_modified: str | None,
    limits: FetchLimits,
    started: float,
) -> FetchResult:
    status = response.status
    retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
    if status == 304:
        # A 304 may omit validators; the ones we sent are still the current ones.
        return FetchResult(
            304,
            None,
            str(response.url),
            etag=response.headers.get("ETag") or etag,
            last_modified=response.headers.get("Last-Modified") or last_modified,
            retry_after=retry_after,
            elapsed=time.monotonic() - started,
        )
    if not 200 <= status < 300:
        reason = f"HTTP {status} {response.reason or ''}".rstrip()
        raise FetchError(
            reason, transient=status in _TRANSIENT_STATUSES, status=status, retry_after=retry_after
        )
    if response.content_length is not None and response.content_length > limits.max_bytes:
        raise FetchError(
            f"response larger than {limits.max_bytes} bytes", transient=False, status=status
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limits.max_bytes:
            raise FetchError(
                f"response larger than {limits.max_bytes} bytes", transient=False, status=status
            )
        chunks.append(chunk)
    return FetchResult(
        status,
        b"".join(chunks),
        str(response.url),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        content_type=response.headers.get("Content-Type"),
        retry_after=retry_after,
        elapsed=time.monotonic() - started,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
