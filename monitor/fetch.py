"""Fetch a feed's bytes: conditional GET over HTTP(S), or a read of a ``file:`` URL.

Role: the I/O edge of the poller towards publishers. HTTP semantics are returned as
data (:class:`FetchResult`: status, validators, caching hints, a permanent redirect,
``Retry-After``, body); deciding when to poll again is :mod:`monitor.schedule`'s job.

Inputs: a shared ``aiohttp.ClientSession`` (owned by the poller, which also sets the
User-Agent and holds the per-host slot from :mod:`monitor.host_limits`), a URL, the
validators from the last successful poll, and :class:`FetchLimits` (timeouts, byte cap,
redirect limit).

Outputs: a :class:`FetchResult` for 2xx and 304 (``body`` is ``None`` on 304), else a
:class:`~monitor.poll_errors.FetchError` whose ``reason`` an operator can read:

=====================================  ================================================
what happened                          ``reason``
=====================================  ================================================
unknown host                           ``DNS lookup failed for host x``
nobody listening                       ``connection refused by x:80``
no connection in time                  ``connect to x timed out after 10s``
no byte for ``read_timeout``           ``no data from x for 20s (read timeout)``
whole request over ``total_timeout``   ``timed out after 30s`` (a slow drip ends here)
socket reset by the server             ``connection reset by x``
body shorter than announced            ``response body broken off: …``
redirect loop / too long a chain       ``too many redirects (more than 5)``
error status                           ``HTTP 503 Service Unavailable``; 410 is
                                       ``HTTP 410 Gone`` with ``FetchError.gone``
body over the cap (after decoding)     ``response larger than N bytes``
=====================================  ================================================

Invariants:

- No more than ``max_bytes`` of *decoded* body are ever held: aiohttp hands over the raw
  bytes (``auto_decompress=False``) and :mod:`monitor.fetch_decode` inflates them with a
  bounded output size, so a small gzip bomb stops at the cap. ``file:`` reads honour the
  same cap. We send ``Accept-Encoding: gzip, deflate``, the codings we can decode.
- Files are read in a worker thread; nothing here blocks the event loop.
- Every foreign exception is wrapped in ``FetchError`` (``raise … from exc``).
- ``file:`` URLs: ``file:relative/x.xml`` resolves against ``base_dir`` (the config
  file's folder); ``file:/abs/x.xml`` and ``file:///abs/x.xml`` are absolute.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import yarl

from monitor.config import PollerSettings
from monitor.fetch_decode import ACCEPT_ENCODING, BadEncoding, BodyDecoder, BodyTooLarge
from monitor.fetch_headers import (
    cache_max_age,
    expires_at,
    parse_retry_after,
    permanent_redirect,
)
from monitor.poll_errors import FetchError

__all__ = ["FetchLimits", "FetchResult", "fetch", "file_path", "parse_retry_after"]

# Statuses worth retrying soon; any other 4xx is the publisher's configuration problem
# (still retried with backoff by the poller, but reported as not transient).
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True, slots=True)
class FetchLimits:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0  # longest silence while waiting for bytes
    total_timeout: float = 30.0
    max_bytes: int = 10_000_000  # decoded body
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: PollerSettings) -> FetchLimits:
        return cls(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            total_timeout=settings.total_timeout,
            max_bytes=settings.max_bytes,
            max_redirects=settings.max_redirects,
        )


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One successful fetch. ``url`` is the final URL (after redirects).

    Scheduling hints: ``retry_after`` and ``cache_control_max_age`` are seconds from
    now; ``expires`` is an absolute unix time (``max-age`` wins when both are set).
    ``permanent_redirect_to`` is the URL a 301/308 moved the feed to (store it as the
    feed's URL); ``None`` when there was no permanent redirect.
    """

    status: int
    body: bytes | None
    url: str
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    retry_after: float | None = None
    elapsed: float = 0.0
    cache_control_max_age: float | None = None
    expires: float | None = None
    permanent_redirect_to: str | None = None
    hub_url: str | None = None  # WebSub: an HTTP ``Link: <…>; rel="hub"`` header
    self_url: str | None = None  # WebSub: ``Link: <…>; rel="self"`` (the topic)

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
    if _split(url).scheme.lower() == "file":
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
        raise _too_large(max_bytes, None)
    return body


def _too_large(max_bytes: int, status: int | None) -> FetchError:
    return FetchError(f"response larger than {max_bytes} bytes", transient=False, status=status)


async def _fetch_http(
    session: aiohttp.ClientSession,
    url: str,
    etag: str | None,
    last_modified: str | None,
    limits: FetchLimits,
    started: float,
) -> FetchResult:
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    timeout = _client_timeout(limits)
    host = _split(url).hostname or url
    try:
        async with session.get(
            _yarl_url(url),
            headers=headers,
            timeout=timeout,
            # aiohttp raises on its Nth redirect response, i.e. follows N - 1, and
            # takes 0 as "no limit": +1 gives "follow at most max_redirects".
            max_redirects=limits.max_redirects + 1,
            auto_decompress=False,  # we inflate ourselves, under the byte cap
        ) as response:
            return await _read_response(response, url, etag, last_modified, limits, started)
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
    except aiohttp.SocketTimeoutError as exc:
        raise FetchError(
            f"no data from {host} for {limits.read_timeout:g}s (read timeout)"
        ) from exc
    except TimeoutError as exc:  # the total timeout: a slow drip, a stalled read
        raise FetchError(f"timed out after {limits.total_timeout:g}s") from exc
    except aiohttp.TooManyRedirects as exc:
        raise FetchError(
            f"too many redirects (more than {limits.max_redirects})", transient=False
        ) from exc
    except aiohttp.NonHttpUrlRedirectClientError as exc:
        raise FetchError(f"redirected to a non-HTTP URL: {exc}", transient=False) from exc
    except aiohttp.InvalidURL as exc:
        raise FetchError(f"invalid URL {exc}", transient=False) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise FetchError(f"{host} closed the connection without a response") from exc
    except aiohttp.ClientPayloadError as exc:
        if _caused_by_reset(exc):
            raise FetchError(f"connection reset by {host}") from exc
        raise FetchError(f"response body broken off: {exc}") from exc
    except aiohttp.ClientOSError as exc:
        if exc.errno == errno.ECONNRESET or _caused_by_reset(exc):
            raise FetchError(f"connection reset by {host}") from exc
        raise FetchError(f"network error with {host}: {exc.strerror or exc}") from exc
    except aiohttp.ClientError as exc:
        raise FetchError(f"HTTP client error: {type(exc).__name__}: {exc}") from exc


# Polls repeat the same few thousand URLs: parse each once, not on every poll.
_split = functools.lru_cache(maxsize=16384)(urlsplit)
_yarl_url = functools.lru_cache(maxsize=16384)(yarl.URL)


@functools.lru_cache(maxsize=64)
def _client_timeout(limits: FetchLimits) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=limits.total_timeout,
        connect=limits.connect_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=limits.read_timeout,
    )


def _caused_by_reset(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # a short walk down the cause chain
        if seen is None:
            return False
        if isinstance(seen, ConnectionResetError) or "reset by peer" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _read_response(
    response: aiohttp.ClientResponse,
    requested: str,
    etag: str | None,
    last_modified: str | None,
    limits: FetchLimits,
    started: float,
) -> FetchResult:
    status = response.status
    headers = response.headers
    retry_after = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
    moved_to = permanent_redirect(
        requested, [(hop.status, str(hop.url)) for hop in response.history], str(response.url)
    )
    max_age = cache_max_age(headers.get("Cache-Control"), headers.get("Age"))
    expires = expires_at(headers.get("Expires"))
    if status == 304 and not (etag or last_modified):
        # Nothing was asked to be compared: the server (or a cache in front of it) is
        # broken, and the feed has delivered nothing. A failure, so it shows and backs off.
        raise FetchError(
            "HTTP 304 Not Modified to a request without validators (a broken server or cache)",
            status=status,
            retry_after=retry_after,
            permanent_redirect_to=moved_to,
        )
    if status == 304:
        # A 304 may omit validators; the ones we sent are still the current ones.
        return FetchResult(
            304,
            None,
            str(response.url),
            etag=headers.get("ETag") or etag,
            last_modified=headers.get("Last-Modified") or last_modified,
            elapsed=time.monotonic() - started,
            retry_after=retry_after,
            cache_control_max_age=max_age,
            expires=expires,
            permanent_redirect_to=moved_to,
        )
    if not 200 <= status < 300:
        reason = f"HTTP {status} {response.reason or ''}".rstrip()
        raise FetchError(
            reason,
            transient=status in _TRANSIENT_STATUSES,
            status=status,
            retry_after=retry_after,
            permanent_redirect_to=moved_to,
        )
    body = await _read_body(response, limits.max_bytes)
    hub_url, self_url = _link_headers(response)
    return FetchResult(
        status,
        body,
        str(response.url),
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        content_type=headers.get("Content-Type"),
        elapsed=time.monotonic() - started,
        retry_after=retry_after,
        cache_control_max_age=max_age,
        expires=expires,
        permanent_redirect_to=moved_to,
        hub_url=hub_url,
        self_url=self_url,
    )


def _link_headers(response: aiohttp.ClientResponse) -> tuple[str | None, str | None]:
    """WebSub discovery from ``Link`` headers (which the spec puts before the body's
    links): the first http(s) ``rel="hub"`` and ``rel="self"``, absolute."""
    if "Link" not in response.headers:
        return None, None
    found: dict[str, str] = {}
    try:
        links = response.links
    except ValueError:  # a malformed header: no discovery, not a failed poll
        return None, None
    for rel in ("hub", "self"):
        for link in links.getall(rel, ()):
            url = str(link.get("url", ""))
            if url.startswith(("http://", "https://")):
                found[rel] = url
                break
    return found.get("hub"), found.get("self")


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    status = response.status
    # A Content-Length over the cap fails at once: decoding never shrinks a body by
    # more than a few bytes, so the decoded body would pass the cap too.
    if response.content_length is not None and response.content_length > max_bytes:
        raise _too_large(max_bytes, status)
    try:
        decoder = BodyDecoder(response.headers.get("Content-Encoding"), max_bytes)
        async for chunk in response.content.iter_any():
            decoder.feed(chunk)
        return decoder.finish()
    except BodyTooLarge as exc:
        raise _too_large(max_bytes, status) from exc
    except BadEncoding as exc:
        raise FetchError(str(exc), transient=False, status=status) from exc
