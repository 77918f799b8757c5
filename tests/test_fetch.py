"""fetch: real HTTP against the local feed server, real files, readable errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from feedserver import FeedServer, feed_server, rss

from monitor.fetch import FetchLimits, FetchResult, fetch, file_path, parse_retry_after
from monitor.poll_errors import FetchError

__all__ = ["feed_server"]  # the fixture, imported so pytest finds it here

T = TypeVar("T")
LIMITS = FetchLimits(connect_timeout=1, total_timeout=2, max_bytes=100_000)
BODY = rss(("a", "Alpha"), ("b", "Beta"))


def run(call: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await call(session)

    return asyncio.run(main())


def get(url: str, limits: FetchLimits = LIMITS, **kwargs: str | None) -> FetchResult:
    return run(lambda session: fetch(session, url, limits=limits, **kwargs))  # type: ignore[arg-type]


def fails(url: str, limits: FetchLimits = LIMITS) -> FetchError:
    with pytest.raises(FetchError) as caught:
        get(url, limits)
    return caught.value


def test_200_returns_body_validators_and_type(feed_server: FeedServer) -> None:
    url = feed_server.set(
        "feed.xml", BODY, etag='"v1"', last_modified="Mon, 06 Jan 2025 10:00:00 GMT"
    )
    result = get(url)
    assert result.status == 200
    assert result.body == BODY.encode()
    assert result.etag == '"v1"'
    assert result.last_modified == "Mon, 06 Jan 2025 10:00:00 GMT"
    assert result.content_type is not None
    assert result.content_type.startswith("application/rss+xml")
    assert result.url == url
    assert result.elapsed > 0


def test_304_when_the_etag_matches(feed_server: FeedServer) -> None:
    url = feed_server.set("feed.xml", BODY, etag='"v1"')
    result = get(url, etag='"v1"')
    assert (result.status, result.body, result.not_modified) == (304, None, True)
    assert result.etag == '"v1"'
    assert feed_server.requests("feed.xml")[-1]["If-None-Match"] == '"v1"'
    assert get(url, etag='"old"').status == 200


def test_304_when_last_modified_matches(feed_server: FeedServer) -> None:
    stamp = "Mon, 06 Jan 2025 10:00:00 GMT"
    url = feed_server.set("feed.xml", BODY, last_modified=stamp)
    result = get(url, last_modified=stamp)
    assert result.status == 304
    assert result.last_modified == stamp
    assert feed_server.requests("feed.xml")[-1]["If-Modified-Since"] == stamp


@pytest.mark.parametrize("chunked", [False, True])
def test_byte_cap(feed_server: FeedServer, chunked: bool) -> None:
    url = feed_server.set("big.xml", b"x" * 50_000, chunked=chunked)
    error = fails(url, FetchLimits(connect_timeout=1, total_timeout=2, max_bytes=10_000))
    assert error.reason == "response larger than 10000 bytes"
    assert get(url, FetchLimits(max_bytes=50_000)).body == b"x" * 50_000


def test_total_timeout(feed_server: FeedServer) -> None:
    url = feed_server.set("slow.xml", BODY, delay=5)
    error = fails(url, FetchLimits(connect_timeout=1, total_timeout=0.3))
    assert error.reason == "timed out after 0.3s"
    assert error.transient


def test_http_500_is_transient(feed_server: FeedServer) -> None:
    url = feed_server.set("broken.xml", "oops", status=500)
    error = fails(url)
    assert error.reason == "HTTP 500 Internal Server Error"
    assert (error.status, error.transient) == (500, True)


def test_503_carries_retry_after(feed_server: FeedServer) -> None:
    url = feed_server.set("busy.xml", "", status=503, headers={"Retry-After": "120"})
    error = fails(url)
    assert error.reason.startswith("HTTP 503")
    assert error.retry_after == 120


def test_404_is_not_transient(feed_server: FeedServer) -> None:
    error = fails(feed_server.url("missing.xml"))
    assert error.reason == "HTTP 404 Not Found"
    assert not error.transient


def test_redirects_are_followed_and_the_final_url_reported(feed_server: FeedServer) -> None:
    new = feed_server.set("new.xml", BODY)
    old = feed_server.set("old.xml", "", status=301, headers={"Location": "/new.xml"})
    result = get(old)
    assert result.url == new
    assert result.body == BODY.encode()


def test_connection_refused() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = fails(f"http://127.0.0.1:{port}/feed.xml")
    assert error.reason == f"connection refused by 127.0.0.1:{port}"
    assert error.transient


def test_unknown_host() -> None:
    error = fails("http://no-such-host.invalid/feed.xml")
    assert error.reason == "DNS lookup failed for host no-such-host.invalid"


def test_file_urls(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    path = tmp_path / "feeds" / "wire.xml"
    path.write_text(BODY)

    async def read(session: aiohttp.ClientSession, url: str) -> FetchResult:
        return await fetch(session, url, limits=LIMITS, base_dir=tmp_path)

    for url in ("file:feeds/wire.xml", f"file:{path}", f"file://{path}", path.as_uri()):
        result = run(lambda session, url=url: read(session, url))  # type: ignore[misc]
        assert result.status == 200
        assert result.body == BODY.encode()
        assert result.url == path.as_uri()


def test_file_errors(tmp_path: Path) -> None:
    (tmp_path / "big.xml").write_bytes(b"x" * 2000)
    small = FetchLimits(max_bytes=1000)

    async def read(session: aiohttp.ClientSession, url: str, limits: FetchLimits) -> FetchResult:
        return await fetch(session, url, limits=limits, base_dir=tmp_path)

    with pytest.raises(FetchError, match=r"file not found: .*missing\.xml"):
        run(lambda session: read(session, "file:missing.xml", LIMITS))
    with pytest.raises(FetchError, match="response larger than 1000 bytes"):
        run(lambda session: read(session, "file:big.xml", small))
    with pytest.raises(FetchError, match="names host"):
        run(lambda session: read(session, "file://relative/x.xml", LIMITS))


def test_file_path_resolution(tmp_path: Path) -> None:
    assert file_path("file:a/b.xml", tmp_path) == tmp_path / "a" / "b.xml"
    assert file_path("file:/abs/b.xml", tmp_path) == Path("/abs/b.xml")
    assert file_path("file:///abs/b%20c.xml", tmp_path) == Path("/abs/b c.xml")
    assert file_path("file://localhost/abs/b.xml", tmp_path) == Path("/abs/b.xml")


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)
    assert parse_retry_after("90", now) == 90
    assert parse_retry_after("Mon, 06 Jan 2025 10:02:00 GMT", now) == 120
    assert parse_retry_after("Mon, 06 Jan 2025 09:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
