"""fetch: real HTTP against the local feed server, real files, readable errors."""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from feedserver import FeedServer, feed_server, rss

from monitor.fetch import FetchLimits, FetchResult, fetch, file_path, parse_retry_after
from monitor.fetch_decode import BadEncoding, BodyDecoder, BodyTooLarge
from monitor.fetch_headers import cache_max_age, expires_at, permanent_redirect
from monitor.host_limits import HostLimiter, host_key
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


def test_a_304_to_a_request_without_validators_is_a_failure(feed_server: FeedServer) -> None:
    """Nothing was asked to be compared: the feed never delivered content, so the poll
    fails (visible, backed off) instead of counting as a healthy unchanged poll."""
    url = feed_server.set("/broken.xml", b"", status=304)
    with pytest.raises(FetchError, match="304 Not Modified to a request without validators"):
        get(url)


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


# -- decoding and the decoded byte cap ---------------------------------------------------

FEED_BYTES = BODY.encode()


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(FEED_BYTES)),
        ("x-gzip", gzip.compress(FEED_BYTES[:100]) + gzip.compress(FEED_BYTES[100:])),
        ("deflate", zlib.compress(FEED_BYTES)),
        ("deflate", zlib.compress(FEED_BYTES)[2:-4]),  # raw deflate, as some servers send
        ("identity", FEED_BYTES),
    ],
    ids=["gzip", "gzip-two-members", "deflate-zlib", "deflate-raw", "identity"],
)
def test_compressed_bodies_are_decoded(
    feed_server: FeedServer, coding: str, encoded: bytes
) -> None:
    url = feed_server.set("z.xml", encoded, headers={"Content-Encoding": coding})
    assert get(url).body == FEED_BYTES
    assert feed_server.requests("z.xml")[-1]["Accept-Encoding"] == "gzip, deflate"


def test_the_cap_counts_decoded_bytes(feed_server: FeedServer) -> None:
    url = feed_server.set(
        "zeros.xml", gzip.compress(bytes(50_000)), headers={"Content-Encoding": "gzip"}
    )
    small = FetchLimits(connect_timeout=1, total_timeout=2, max_bytes=10_000)
    assert fails(url, small).reason == "response larger than 10000 bytes"
    assert get(url, FetchLimits(max_bytes=50_000)).body == bytes(50_000)


@pytest.mark.parametrize(
    ("coding", "body", "reason"),
    [
        ("br", b"\x1b\x00", "unsupported Content-Encoding 'br'"),
        ("gzip", gzip.compress(FEED_BYTES)[:40], "the gzip response body ends in mid-stream"),
        ("gzip", b"not gzip at all", "cannot decode the gzip response body: "),
    ],
)
def test_undecodable_bodies(feed_server: FeedServer, coding: str, body: bytes, reason: str) -> None:
    url = feed_server.set("bad.xml", body, headers={"Content-Encoding": coding})
    error = fails(url)
    assert error.reason.startswith(reason)
    assert not error.transient


def test_body_decoder_in_small_pieces() -> None:
    encoded = gzip.compress(FEED_BYTES) + gzip.compress(FEED_BYTES)
    decoder = BodyDecoder("gzip", 10_000)
    for start in range(0, len(encoded), 3):
        decoder.feed(encoded[start : start + 3])
    assert decoder.finish() == FEED_BYTES * 2
    bomb = BodyDecoder("gzip", 1000)
    with pytest.raises(BodyTooLarge):
        bomb.feed(gzip.compress(bytes(10_000_000)))
    assert bomb.size == 1001  # never more than one byte past the cap
    with pytest.raises(BadEncoding, match="unsupported Content-Encoding 'compress'"):
        BodyDecoder("compress", 10)


def test_session_user_agent_is_sent(feed_server: FeedServer) -> None:
    url = feed_server.set("ua.xml", BODY)

    async def main() -> FetchResult:
        headers = {"User-Agent": "wirewatch/test"}
        async with aiohttp.ClientSession(headers=headers) as session:
            return await fetch(session, url, limits=LIMITS)

    asyncio.run(main())
    assert feed_server.requests("ua.xml")[-1]["User-Agent"] == "wirewatch/test"


def test_read_timeout(feed_server: FeedServer) -> None:
    url = feed_server.set("silent.xml", BODY, delay=5)
    error = fails(url, FetchLimits(connect_timeout=1, read_timeout=0.3, total_timeout=5))
    assert error.reason == "no data from 127.0.0.1 for 0.3s (read timeout)"
    assert error.transient


# -- redirects, 410 and caching hints ----------------------------------------------------


@pytest.mark.parametrize(("status", "permanent"), [(301, True), (308, True), (302, False)])
def test_permanent_redirects_are_reported(
    feed_server: FeedServer, status: int, permanent: bool
) -> None:
    new = feed_server.set("new.xml", BODY)
    old = feed_server.set("old.xml", "", status=status, headers={"Location": "/new.xml"})
    result = get(old)
    assert result.url == new
    assert result.permanent_redirect_to == (new if permanent else None)


def test_a_permanent_then_temporary_redirect_stores_the_permanent_target(
    feed_server: FeedServer,
) -> None:
    final = feed_server.set("final.xml", BODY)
    moved = feed_server.set("moved.xml", "", status=302, headers={"Location": "/final.xml"})
    old = feed_server.set("old.xml", "", status=301, headers={"Location": "/moved.xml"})
    result = get(old)
    assert (result.url, result.permanent_redirect_to) == (final, moved)


def test_redirect_limit_counts_redirects_followed(feed_server: FeedServer) -> None:
    for hop in range(3):
        feed_server.set(f"r{hop}", "", status=302, headers={"Location": f"/r{hop + 1}"})
    feed_server.set("r3", BODY)
    assert get(feed_server.url("r0"), FetchLimits(max_redirects=3)).body == BODY.encode()
    error = fails(feed_server.url("r0"), FetchLimits(max_redirects=2))
    assert error.reason == "too many redirects (more than 2)"
    error = fails(feed_server.url("r2"), FetchLimits(max_redirects=0))
    assert error.reason == "too many redirects (more than 0)"


def test_410_is_gone(feed_server: FeedServer) -> None:
    feed_server.set("dead.xml", "", status=410)
    old = feed_server.set("old.xml", "", status=301, headers={"Location": "/dead.xml"})
    error = fails(old)
    assert (error.reason, error.status, error.gone, error.transient) == (
        "HTTP 410 Gone",
        410,
        True,
        False,
    )
    assert error.permanent_redirect_to == feed_server.url("dead.xml")
    assert not fails(feed_server.url("missing.xml")).gone


def test_caching_hints(feed_server: FeedServer) -> None:
    expires = "Mon, 06 Jan 2025 10:00:00 GMT"
    headers = {"Cache-Control": "public, max-age=600", "Age": "100", "Expires": expires}
    url = feed_server.set("cached.xml", BODY, headers=headers, etag='"v1"')
    for result in (get(url), get(url, etag='"v1"')):
        assert result.cache_control_max_age == 500
        assert result.expires == datetime(2025, 1, 6, 10, 0, tzinfo=UTC).timestamp()
    plain = get(feed_server.set("plain.xml", BODY))
    assert (plain.cache_control_max_age, plain.expires, plain.permanent_redirect_to) == (
        None,
        None,
        None,
    )


def test_header_readings() -> None:
    assert cache_max_age("max-age=300") == 300
    assert cache_max_age('private, MAX-AGE="60"', "90") == 0
    assert cache_max_age("no-cache, max-age=300") == 0
    assert cache_max_age("s-maxage=10") is None
    assert cache_max_age(None) is None
    assert expires_at("0") is None
    assert expires_at("Thu, 01 Jan 1970 00:01:00 GMT") == 60
    hops = [(301, "http://a/1"), (308, "http://a/2"), (302, "http://a/3")]
    assert permanent_redirect("http://a/1", hops, "http://a/4") == "http://a/3"
    assert permanent_redirect("http://a/1", [(302, "http://a/1")], "http://a/2") is None
    assert permanent_redirect("http://a/1", [(301, "http://a/1")], "http://a/2") == "http://a/2"
    assert permanent_redirect("http://a/1", [], "http://a/1") is None


# -- per-host limits ---------------------------------------------------------------------


def test_host_key() -> None:
    assert host_key("https://Example.COM:443/a") == "example.com"
    assert host_key("http://example.com:8080/a") == "example.com:8080"
    assert host_key("file:///tmp/x.xml") is None
    assert host_key("file:relative.xml") is None
    assert host_key("http://[::1/") is None


def test_host_limiter_caps_each_host_and_forgets_idle_hosts() -> None:
    limiter = HostLimiter(2)
    peak: dict[str, int] = {}

    async def one(url: str) -> None:
        async with limiter.slot(url):
            key = host_key(url) or "file"
            peak[key] = max(peak.get(key, 0), limiter.in_use(url))
            await asyncio.sleep(0.01)

    async def main() -> None:
        urls = [f"https://a.example/{n}" for n in range(6)]
        urls += [f"https://b.example/{n}" for n in range(6)]
        urls += [f"file:///tmp/{n}.xml" for n in range(6)]
        await asyncio.gather(*(one(url) for url in urls))

    asyncio.run(main())
    assert peak == {"a.example": 2, "b.example": 2, "file": 0}
    assert limiter.hosts == 0
    with pytest.raises(ValueError, match="at least 1"):
        HostLimiter(0)


def test_host_limiter_releases_on_errors() -> None:
    limiter = HostLimiter(1)

    async def main() -> None:
        with pytest.raises(RuntimeError):
            async with limiter.slot("https://a.example/x"):
                raise RuntimeError("boom")
        async with asyncio.timeout(1), limiter.slot("https://a.example/y"):
            assert limiter.in_use("https://a.example/") == 1

    asyncio.run(main())
    assert limiter.hosts == 0
