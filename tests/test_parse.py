"""parse_feed: RSS 2.0, Atom, RSS 1.0 and JSON Feed bodies → our own frozen values."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.discover import discover_feeds
from monitor.items import Item
from monitor.normalise import item_key
from monitor.parse import FeedRef, ParsedFeed, parse_feed
from monitor.parse_pool import ParsePool
from monitor.poll_errors import FeedParseError, NotAFeed

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
FEED = FeedRef(url="https://wire.example/feed.xml", name="", tags=("wire",), language=None)
BASE = "https://wire.example/feed.xml"

RSS2 = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>Example &amp; Wire</title>
  <language>en-gb</language>
  <item>
    <title>Minister &lt;b&gt;resigns&lt;/b&gt;</title>
    <link>/news/1?utm_source=rss&amp;id=1#top</link>
    <guid isPermaLink="false">story-1</guid>
    <pubDate>Mon, 06 Jan 2025 10:00:00 +0100</pubDate>
    <description>&lt;p&gt;First &amp;amp; foremost.&lt;/p&gt;
      &lt;p&gt;Second paragraph.&lt;/p&gt;</description>
  </item>
  <item>
    <title>No summary, only content</title>
    <link>https://wire.example/news/2</link>
    <content:encoded><![CDATA[<div>Full <i>text</i> here</div>]]></content:encoded>
  </item>
  <item></item>
  <item>
    <title>Repeat of story one</title>
    <guid isPermaLink="false">story-1</guid>
  </item>
  <item>
    <title>From the future</title>
    <guid>story-3</guid>
    <pubDate>Wed, 01 Jan 2031 00:00:00 GMT</pubDate>
  </item>
</channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="text">Atom Wire</title>
  <id>urn:uuid:feed</id>
  <updated>2025-01-06T10:00:00Z</updated>
  <entry>
    <title type="html">Talks &lt;em&gt;collapse&lt;/em&gt;</title>
    <id>urn:uuid:entry-1</id>
    <link rel="alternate" href="https://atom.example/a/1?fbclid=zzz"/>
    <updated>2025-01-06T08:30:00+02:00</updated>
    <summary type="html">&lt;p&gt;Negotiators left.&lt;/p&gt;</summary>
  </entry>
  <entry>
    <title>Plain &amp; simple</title>
    <id>urn:uuid:entry-2</id>
    <content type="xhtml">
      <div xmlns="http://www.w3.org/1999/xhtml"><p>Only content</p></div>
    </content>
  </entry>
</feed>
"""

RSS1 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://rdf.example/">
    <title>RDF Wire</title>
    <link>https://rdf.example/</link>
    <description>d</description>
  </channel>
  <item rdf:about="https://rdf.example/1">
    <title>RDF item</title>
    <link>https://rdf.example/1</link>
    <description>An RSS 1.0 entry.</description>
    <dc:date>2025-01-05T23:00:00Z</dc:date>
  </item>
</rdf:RDF>
"""

JSON_FEED = b"""{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "JSON Wire",
  "items": [
    {"id": "j1", "url": "https://json.example/1?utm_campaign=x", "title": "JSON item",
     "content_html": "<p>Hello <b>JSON</b></p>", "date_published": "2025-01-06T10:00:00+01:00"},
    {"id": 2, "title": "Numeric id", "content_text": "plain\\ntext"},
    "not an object"
  ]
}"""


def parse(body: bytes, content_type: str | None = "application/rss+xml") -> ParsedFeed:
    return parse_feed(body, feed=FEED, content_type=content_type, base_url=BASE, now=NOW)


def test_rss2_items_are_normalised() -> None:
    parsed = parse(RSS2)
    assert parsed.title == "Example & Wire"
    assert parsed.warning is None
    assert parsed.skipped == 2  # the empty <item> and the repeated GUID
    first, second, third = parsed.items
    assert first == Item(
        key=item_key(FEED.url, "story-1", None, None),
        feed_url=FEED.url,
        feed_name="Example & Wire",
        url="https://wire.example/news/1?id=1",
        title="Minister resigns",
        summary="First & foremost.\nSecond paragraph.",
        guid="story-1",
        published=datetime(2025, 1, 6, 9, 0, tzinfo=UTC),
        tags=("wire",),
        language="en-gb",
    )
    assert second.summary == "Full text here"
    assert second.guid is None
    assert second.key == item_key(FEED.url, None, "https://wire.example/news/2", None)
    assert third.published == NOW  # a date years ahead is clamped to now


def test_markup_becomes_text_without_feedparsers_sanitizer() -> None:
    """feedparser's sanitizer is off (it cost half the parse time): our own reduction to
    text must still drop script and style with their content, and keep the words."""
    body = b"""<rss version="2.0"><channel><title>w</title><item><guid>s1</guid>
    <title>Vote &lt;b&gt;counted&lt;/b&gt;</title>
    <description>&lt;script&gt;alert(1)&lt;/script&gt;
    &lt;style&gt;p {color: red}&lt;/style&gt;&lt;p onclick="x()"&gt;Polls
    &lt;b&gt;closed&lt;/b&gt;&lt;/p&gt;&lt;iframe src="https://evil.example"&gt;&lt;/iframe&gt;
    &lt;section&gt;Results at 9&lt;/section&gt;</description></item></channel></rss>"""
    (item,) = parse(body).items
    assert item.title == "Vote counted"
    assert item.summary == "Polls closed\nResults at 9"


def test_configured_name_and_language_win() -> None:
    feed = FeedRef(url=FEED.url, name="My wire", language="fr")
    parsed = parse_feed(RSS2, feed=feed, content_type=None, base_url=BASE, now=NOW)
    assert {item.feed_name for item in parsed.items} == {"My wire"}
    assert {item.language for item in parsed.items} == {"fr"}


def test_atom() -> None:
    parsed = parse(ATOM, "application/atom+xml")
    assert parsed.title == "Atom Wire"
    one, two = parsed.items
    assert one.title == "Talks collapse"
    assert one.url == "https://atom.example/a/1"
    assert one.summary == "Negotiators left."
    assert one.published == datetime(2025, 1, 6, 6, 30, tzinfo=UTC)
    assert one.guid == "urn:uuid:entry-1"
    assert two.title == "Plain & simple"
    assert two.summary == "Only content"


def test_rss1_rdf() -> None:
    parsed = parse(RSS1, "application/rdf+xml")
    (item,) = parsed.items
    assert item.title == "RDF item"
    assert item.url == "https://rdf.example/1"
    assert item.summary == "An RSS 1.0 entry."
    assert item.published == datetime(2025, 1, 5, 23, 0, tzinfo=UTC)


def test_json_feed() -> None:
    parsed = parse(JSON_FEED, "application/feed+json")
    assert parsed.title == "JSON Wire"
    assert parsed.skipped == 1
    one, two = parsed.items
    assert one.url == "https://json.example/1"
    assert one.summary == "Hello JSON"
    assert one.published == datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    assert two.guid == "2"
    assert two.summary == "plain text"


def test_same_body_gives_same_keys() -> None:
    assert [i.key for i in parse(RSS2).items] == [i.key for i in parse(RSS2).items]


def test_a_feed_broken_after_its_entries_is_read_with_a_warning() -> None:
    truncated = RSS2[: RSS2.index(b"<item></item>")]
    parsed = parse(truncated)
    assert len(parsed.items) == 2
    assert parsed.warning is not None
    assert "SAXParseException" in parsed.warning


def test_an_empty_but_valid_feed_has_no_items() -> None:
    body = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
    parsed = parse(body)
    assert parsed.items == ()
    assert parsed.title == "t"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"<!doctype html><html><body><p>Welcome</p></body></html>", "text/html", "HTML page"),
        (b"<!doctype html><title>x</title><p>no html tag</p>", "text/html", "HTML page"),
        (b"<html><head><title>x</title></head></html>", "application/xml", "HTML page"),
        (b"<?xml version='1.0'?><rss version='2.0'><channel><item>", None, "malformed feed"),
        (b"\x00\x01garbage<<<", None, "malformed feed"),
        (b"<?xml version='1.0'?><note><to>x</to></note>", "application/xml", "not a feed"),
        (b"   ", None, "empty response body"),
        (b"{not json", "application/json", "invalid JSON"),
        (b'{"hello": "world"}', "application/json", "jsonfeed.org"),
    ],
)
def test_not_a_feed_raises_with_a_reason(
    body: bytes, content_type: str | None, reason: str
) -> None:
    with pytest.raises(FeedParseError, match=reason):
        parse(body, content_type)


def test_results_and_errors_cross_a_process_boundary() -> None:
    parsed = parse(RSS2)
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    error = pickle.loads(pickle.dumps(FeedParseError("not a feed: got an HTML page")))
    assert isinstance(error, FeedParseError)
    assert error.reason == "not a feed: got an HTML page"


def test_a_pool_of_two_parse_processes_shares_the_work() -> None:
    async def main() -> list[ParsedFeed]:
        pool = ParsePool(2)
        try:
            call = functools.partial(
                parse_feed,
                RSS2,
                feed=FeedRef(url="https://x.example/"),
                content_type=None,
                base_url="https://x.example/",
            )
            return await asyncio.gather(*(pool.parse(call) for _ in range(4)))
        finally:
            await pool.close()

    results = asyncio.run(main())
    assert len({len(parsed.items) for parsed in results}) == 1 and len(results) == 4


def test_a_mislabelled_content_type_is_only_a_warning() -> None:
    body = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
    parsed = parse(body, "text/html")
    assert parsed.items == ()
    assert parsed.warning is not None
    assert "NonXMLContentType" in parsed.warning
    assert len(parse(RSS2, "text/html; charset=utf-8").items) == 3


# -- golden files: one feed per format, its expected items beside it (STYLE.md §17) -------
# Regenerate after a deliberate change: WIREWATCH_UPDATE_GOLDEN=1 pytest tests/test_parse.py

GOLDEN = Path(__file__).parent / "data" / "golden"
GOLDEN_FEEDS = sorted(p for p in GOLDEN.iterdir() if not p.name.endswith(".expected.json"))
CONTENT_TYPES = {".xml": "application/xml; charset=utf-8", ".json": "application/feed+json"}


def _golden(parsed: ParsedFeed) -> dict[str, Any]:
    return {
        "title": parsed.title,
        "ttl_s": parsed.ttl_s,
        "skipped": parsed.skipped,
        "warning": parsed.warning,
        "items": [item.to_json() for item in parsed.items],
    }


def test_every_format_has_a_golden_file() -> None:
    names = {path.stem for path in GOLDEN_FEEDS}
    assert names == {
        "rss091", "rss092", "rss10", "rss20", "atom03", "atom10", "jsonfeed10", "jsonfeed11"
    }  # fmt: skip


@pytest.mark.parametrize("path", GOLDEN_FEEDS, ids=[p.name for p in GOLDEN_FEEDS])
def test_golden(path: Path) -> None:
    feed = FeedRef(url=f"https://configured.example/{path.name}", tags=("golden",))
    base = f"https://{path.stem}.example/feeds/{path.name}"
    parsed = parse_feed(
        path.read_bytes(),
        feed=feed,
        content_type=CONTENT_TYPES[path.suffix],
        base_url=base,
        now=NOW,
    )
    expected_path = path.with_name(f"{path.stem}.expected.json")
    actual = _golden(parsed)
    if os.environ.get("WIREWATCH_UPDATE_GOLDEN") or not expected_path.exists():
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert actual == json.loads(expected_path.read_text())
    assert [Item.from_json(data) for data in actual["items"]] == list(parsed.items)


# -- ttl, HTML pages, charsets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "ttl_s"),
    [
        ("<ttl>15</ttl>", 900.0),
        ("<ttl> 60 </ttl>", 3600.0),
        ("<ttl>0</ttl>", None),
        ("<ttl>-5</ttl>", None),
        ("<ttl>soon</ttl>", None),
        ("<ttl>inf</ttl>", None),
        ("", None),
    ],
)
def test_rss_ttl(channel: str, ttl_s: float | None) -> None:
    body = f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{channel}"
    body += "<item><guid>1</guid><title>x</title></item></channel></rss>"
    assert parse(body.encode()).ttl_s == ttl_s


def test_html_page_with_alternates_raises_not_a_feed() -> None:
    page = b"""<html><head>
      <link rel="alternate" type="application/atom+xml" href="/atom.xml" title="Atom">
      <link rel="alternate" type="application/feed+json" href="feed.json">
    </head><body>News</body></html>"""
    with pytest.raises(NotAFeed) as caught:
        parse_feed(page, feed=FEED, content_type="text/html", base_url="https://site.example/a/")
    urls = ("https://site.example/atom.xml", "https://site.example/a/feed.json")
    assert caught.value.feed_urls == urls
    assert isinstance(caught.value, FeedParseError)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (type(copy), copy.reason, copy.feed_urls) == (NotAFeed, caught.value.reason, urls)


def test_discover_feeds() -> None:
    page = b"""<!doctype html><html><head><base href="https://cdn.example/site/">
      <link rel="stylesheet" href="style.css">
      <LINK REL="Alternate" TYPE="application/RSS+XML" HREF="comments.rss" TITLE="Comments">
      <link rel="alternate home" type="application/rss+xml" href="main.rss"/>
      <link rel="alternate" type="application/rss+xml" href="main.rss">
      <link rel="alternate" type="text/html" href="/fr/">
      <link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
      <link rel="alternate" type="application/rss+xml" href="file:///etc/passwd">
      <link rel="alternate" type="application/atom+xml" href="https://other.example/a.atom">
      <link rel="alternate" type="application/rss+xml">
    </head><body><link rel="alternate" type="application/json" href="/x.json"></body></html>"""
    assert discover_feeds(page, "https://site.example/page") == [
        "https://cdn.example/site/main.rss",
        "https://other.example/a.atom",
        "https://cdn.example/x.json",
        "https://cdn.example/site/comments.rss",
    ]
    assert discover_feeds(b"<html><p>nothing</p>", "https://site.example/") == []
    assert discover_feeds(b"<<<!\x00<link rel=alternate", "https://site.example/") == []
    local = b'<link rel="alternate" type="application/rss+xml" href="feed.xml">'
    assert discover_feeds(local, "file:///srv/site/index.html") == ["file:///srv/site/feed.xml"]


def test_discover_feeds_uses_the_charset() -> None:
    page = '<link rel="alternate" type="application/rss+xml" href="/café.xml">'
    urls = discover_feeds(
        page.encode("latin-1"), "https://s.example/", "text/html; charset=latin-1"
    )
    assert urls == ["https://s.example/café.xml"]


def test_utf8_labelled_latin1_is_read_as_utf8_with_a_warning() -> None:
    body = "<?xml version='1.0'?><rss version='2.0'><channel><title>Café – news</title>"
    body += "<item><guid>1</guid><title>“quoted”</title></item></channel></rss>"
    parsed = parse(body.encode(), "application/rss+xml; charset=iso-8859-1")
    assert parsed.title == "Café – news"
    assert parsed.items[0].title == "“quoted”"
    assert parsed.warning == "charset label 'iso-8859-1' ignored: the body is UTF-8"
    # Real Latin-1 under the same label is left alone.
    latin = body.replace("–", "-").replace("“", '"').replace("”", '"').encode("latin-1")
    parsed = parse(latin, "application/rss+xml; charset=iso-8859-1")
    assert (parsed.title, parsed.warning) == ("Café - news", None)


def test_json_feed_not_in_utf8_is_read_with_a_warning() -> None:
    body = '{"version": "https://jsonfeed.org/version/1.1", "title": "Café",'
    body += ' "items": [{"id": "1", "title": "naïve"}]}'
    parsed = parse(body.encode("windows-1252"), "application/feed+json")
    assert (parsed.title, parsed.items[0].title) == ("Café", "naïve")
    assert parsed.warning == "JSON Feed is not UTF-8; read as windows-1252"


def test_harmless_entities_are_kept() -> None:
    body = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
<!ENTITY nbsp "&#160;">
<!ENTITY org "ACME">
]>
<rss version="2.0"><channel><title>t</title>
<item><guid>1</guid><title>a&nbsp;b &org;</title></item></channel></rss>"""
    parsed = parse(body)
    assert parsed.items[0].title == "a b ACME"  # nbsp is whitespace to html_to_text
    assert parsed.warning is None


def test_a_lone_surrogate_is_replaced_and_the_feed_s_other_items_kept() -> None:
    """A JSON "\\ud800" escape or an XML "&#55296;" cannot be encoded: hashing or storing
    the item failed, and with it every poll of the whole feed."""
    body = (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": ['
        '{"id": "x\\udfff", "title": "Bad \\ud800 title"}, {"id": "2", "title": "Fine"}]}'
    )
    parsed = parse(body.encode(), "application/feed+json")
    assert [item.title for item in parsed.items] == ["Bad \ufffd title", "Fine"]
    assert parsed.items[0].guid == "x\ufffd"
    for item in parsed.items:
        item.to_json()
        json.dumps(item.to_json()).encode("utf-8")  # storable: no surrogate left
    rss = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><guid>1</guid><title>odd &#55296; char</title></item>
<item><guid>2</guid><title>Fine</title></item></channel></rss>"""
    parsed = parse(rss)
    assert [item.title for item in parsed.items] == ["odd \ufffd char", "Fine"]


def test_json_feed_fields_that_are_not_text_are_not_turned_into_text() -> None:
    body = (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": ['
        '{"id": 7, "title": ["China", "Russia"], "summary": {"a": 1}, "url": "https://x/1"}]}'
    )
    [item] = parse(body.encode(), "application/feed+json").items
    assert (item.guid, item.title, item.summary) == ("7", "China Russia", "")
