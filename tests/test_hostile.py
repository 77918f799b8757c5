"""Hostile input, each against a real local server: no crash, bounded memory, a clear reason.

The reason asserted is the ``FetchError``/``FeedParseError`` reason the poller stores as
the feed's last error (its health), so these are also tests of what an operator reads.
Memory is measured with ``tracemalloc`` (Python allocations, including the bytes objects
zlib and feedparser produce), which is what a hostile feed would blow up.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import aiohttp
import pytest
from feedserver import FeedServer, rss
from hostile_server import HostileServer, hostile_server

from monitor.fetch import FetchLimits, FetchResult, fetch
from monitor.parse import FeedRef, ParsedFeed, parse_feed
from monitor.poll_errors import FeedParseError, FetchError, NotAFeed

__all__ = ["hostile_server"]  # the fixture, imported so pytest finds it here

T = TypeVar("T")
MB = 1_000_000
LIMITS = FetchLimits(connect_timeout=1, read_timeout=5, total_timeout=5, max_bytes=MB)
FEED = FeedRef(url="https://configured.example/feed")


def measured(call: Callable[[], T]) -> tuple[T | BaseException, float, float]:
    """``call()``'s result (or exception), its peak traced memory in MB, and its seconds."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        outcome: T | BaseException = call()
    except BaseException as exc:
        outcome = exc
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, peak / MB, time.monotonic() - started


def get(url: str, limits: FetchLimits = LIMITS) -> FetchResult:
    async def main() -> FetchResult:
        async with aiohttp.ClientSession() as session:
            return await fetch(session, url, limits=limits)

    return asyncio.run(main())


def fetch_error(url: str, limits: FetchLimits = LIMITS) -> tuple[FetchError, float, float]:
    outcome, peak, seconds = measured(lambda: get(url, limits))
    assert isinstance(outcome, FetchError), outcome
    return outcome, peak, seconds


def get_and_parse(url: str) -> ParsedFeed:
    result = get(url)
    assert result.body is not None
    return parse_feed(result.body, feed=FEED, content_type=result.content_type, base_url=url)


def test_slow_drip_hits_the_total_timeout(hostile_server: HostileServer) -> None:
    limits = FetchLimits(connect_timeout=1, read_timeout=5, total_timeout=0.6, max_bytes=MB)
    error, _peak, seconds = fetch_error(hostile_server.url("drip"), limits)
    assert error.reason == "timed out after 0.6s"
    assert error.transient
    assert seconds < 2


def test_endless_body_hits_the_byte_cap(hostile_server: HostileServer) -> None:
    error, peak, _seconds = fetch_error(hostile_server.url("endless"))
    assert error.reason == f"response larger than {MB} bytes"
    assert not error.transient
    assert peak < 8  # MB: the cap plus a chunk or two, not the stream


@pytest.mark.parametrize("path", ["bomb", "bomb.static"])
def test_gzip_bomb_stops_at_the_decoded_cap(hostile_server: HostileServer, path: str) -> None:
    # /bomb inflates without end; /bomb.static is ~100 KB on the wire and 100 MB inflated:
    # both are far under the cap as sent, and must stop at the cap once decoded.
    error, peak, seconds = fetch_error(hostile_server.url(path))
    assert error.reason == f"response larger than {MB} bytes"
    assert peak < 8, f"peak traced memory {peak:.1f} MB"
    assert seconds < 5


def test_redirect_loop(feed_server: FeedServer) -> None:
    url = feed_server.set("loop", "", status=302, headers={"Location": "/loop"})
    limits = FetchLimits(connect_timeout=1, total_timeout=5, max_redirects=3)
    error, _peak, _seconds = fetch_error(url, limits)
    assert error.reason == "too many redirects (more than 3)"
    assert feed_server.hits("loop") == 4  # the request and three redirects, then stop


def test_html_instead_of_a_feed_names_the_feeds_it_advertises(feed_server: FeedServer) -> None:
    page = (
        "<!doctype html><html><head><title>Wire</title>"
        '<link rel="alternate" type="application/rss+xml" href="/feeds/news.xml">'
        '<link rel="alternate" type="application/atom+xml" href="comments.atom" title="Comments">'
        "</head><body><p>Welcome</p></body></html>"
    )
    url = feed_server.set("site/", page, content_type="text/html; charset=utf-8")
    feed_server.set("feeds/news.xml", rss(("n1", "Discovered item")))
    with pytest.raises(NotAFeed) as caught:
        get_and_parse(url)
    news, comments = feed_server.url("feeds/news.xml"), feed_server.url("site/comments.atom")
    assert caught.value.feed_urls == (news, comments)
    assert caught.value.reason == f"not a feed: got an HTML page; it advertises {news} (and 1 more)"
    # What the poller does next: fetch the first discovered feed instead.
    (item,) = get_and_parse(caught.value.feed_urls[0]).items
    assert item.title == "Discovered item"


def test_html_without_alternates(feed_server: FeedServer) -> None:
    url = feed_server.set("plain.html", "<html><body>hi</body></html>", content_type="text/html")
    with pytest.raises(NotAFeed) as caught:
        get_and_parse(url)
    assert caught.value.feed_urls == ()
    assert caught.value.reason == "not a feed: got an HTML page that advertises no feed"


def test_invalid_xml(feed_server: FeedServer) -> None:
    url = feed_server.set("bad.xml", "<?xml version='1.0'?><rss version='2.0'><channel><item>")
    with pytest.raises(FeedParseError, match=r"^malformed feed: SAXParseException"):
        get_and_parse(url)
    good = rss(("a", "Alpha"), ("b", "Beta"))
    url = feed_server.set("cut.xml", good[: good.index("<item>", good.index("Beta") - 60)])
    parsed = get_and_parse(url)
    assert [item.title for item in parsed.items] == ["Alpha"]
    assert parsed.warning is not None
    assert parsed.warning.startswith("SAXParseException")


def _entity_feed(doctype: str, title: str) -> str:
    return (
        f"<?xml version='1.0'?>\n{doctype}\n<rss version='2.0'><channel><title>t</title>"
        f"<item><guid>1</guid><title>{title}</title></item></channel></rss>"
    )


BILLION_LAUGHS = _entity_feed(
    '<!DOCTYPE rss [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{(f"&lol{i - 1};" if i > 1 else "&lol;") * 10}">\n' for i in range(1, 10)
    )
    + "]>",
    "&lol9;",
)
QUADRATIC_BLOWUP = _entity_feed(
    f'<!DOCTYPE rss [<!ENTITY a "{"A" * 100_000}">]>', "&a;" * 5_000
)  # 500 MB if expanded
EXTERNAL_ENTITY = _entity_feed('<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (BILLION_LAUGHS, "entity 'lol1' refers to other entities"),
        (QUADRATIC_BLOWUP, "entity references would expand to more than 1000000 bytes"),
        (EXTERNAL_ENTITY, "parameter or external entity declared"),
    ],
    ids=["billion-laughs", "quadratic-blowup", "external-entity"],
)
def test_entity_expansion_is_refused(feed_server: FeedServer, body: str, why: str) -> None:
    url = feed_server.set("lol.xml", body)
    outcome, peak, seconds = measured(lambda: get_and_parse(url))
    assert isinstance(outcome, ParsedFeed), outcome
    assert outcome.warning is not None
    assert outcome.warning.startswith(f"entity declarations removed: {why}")
    (item,) = outcome.items
    assert "lol" not in item.title.replace("&lol9;", "")  # nothing was expanded
    assert "root:" not in item.title
    assert len(item.title) <= 1_000
    assert peak < 5, f"peak traced memory {peak:.1f} MB"
    assert seconds < 1


CAFE = "Café – “quotes” naïve"


def _latin_feed(encoding: str, declaration: str = "") -> bytes:
    return (
        f"<?xml version='1.0'{declaration}?><rss version='2.0'><channel><title>{CAFE}</title>"
        f"<item><guid>1</guid><title>{CAFE}</title></item></channel></rss>"
    ).encode(encoding)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_latin_feed("windows-1252"), "application/rss+xml; charset=utf-8"),
        (_latin_feed("windows-1252", " encoding='utf-8'"), "text/xml"),
        (_latin_feed("windows-1252"), "application/rss+xml"),
        (_latin_feed("windows-1252"), None),
        (_latin_feed("utf-8"), "application/rss+xml; charset=ISO-8859-1"),
        (_latin_feed("utf-8"), "text/xml"),
        (_latin_feed("utf-8"), "application/rss+xml; charset=no-such-charset"),
    ],
    ids=[
        "1252-labelled-utf8",
        "1252-declared-utf8",
        "1252-no-charset",
        "1252-no-content-type",
        "utf8-labelled-latin1",
        "utf8-text-xml-no-charset",
        "utf8-unknown-charset",
    ],
)
def test_wrong_or_missing_charset(
    feed_server: FeedServer, body: bytes, content_type: str | None
) -> None:
    url = feed_server.set("charset.xml", body, content_type=content_type)
    parsed = get_and_parse(url)
    assert parsed.title == CAFE
    assert [item.title for item in parsed.items] == [CAFE]


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "HTTP 500 Internal Server Error"), (502, "HTTP 502 Bad Gateway")],
)
def test_5xx(feed_server: FeedServer, status: int, reason: str) -> None:
    url = feed_server.set("down.xml", "<html>oops</html>", status=status)
    error, _peak, _seconds = fetch_error(url)
    assert (error.reason, error.status, error.transient) == (reason, status, True)


def test_reset_mid_response(hostile_server: HostileServer) -> None:
    error, _peak, _seconds = fetch_error(hostile_server.url("reset"))
    assert error.reason == "connection reset by 127.0.0.1"
    assert error.transient


def test_reset_before_the_response(hostile_server: HostileServer) -> None:
    error, _peak, _seconds = fetch_error(hostile_server.url("reset.early"))
    assert error.reason == "connection reset by 127.0.0.1"
    assert error.transient


def test_unknown_host() -> None:
    error, _peak, _seconds = fetch_error("http://wire.invalid/feed.xml")
    assert error.reason == "DNS lookup failed for host wire.invalid"
    assert error.transient


def test_deeply_nested_json(feed_server: FeedServer) -> None:
    url = feed_server.set("deep.json", '{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(FeedParseError, match=r"^not a feed: JSON nested too deeply$"):
        get_and_parse(url)


def test_gzip_feed_under_the_cap_is_read(feed_server: FeedServer) -> None:
    body = gzip.compress(rss(("g", "Gzipped")).encode())
    url = feed_server.set("gz.xml", body, headers={"Content-Encoding": "gzip"})
    assert [item.title for item in get_and_parse(url).items] == ["Gzipped"]
