"""The entry scan and the new-entries-only parse: same items as a full parse, or a refusal.

The property that matters (see :mod:`monitor.parse_partial`): whenever the scan is
trusted and the cut body parses to the keys the scan expected, its items are exactly the
full parse's items for those entries; any disagreement is a ``None`` (full parse).
Checked on the golden files, on feedparser's ~2,100 test feeds and on bodies shaped like
the benchmark's feed farm; the scan's own rules are tested on small hand-made bodies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedserver import rss

from monitor.entry_scan import EntryScan, scan_entries
from monitor.normalise import item_key
from monitor.parse import FeedRef, ParsedFeed, parse_feed
from monitor.parse_partial import parse_partial
from monitor.poll_errors import FeedParseError

DATA = Path(__file__).parent / "data"
NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
FEED = FeedRef(url="https://configured.example/feed", tags=("t",))
BASE = "https://example.com/feed"


def _full(body: bytes) -> ParsedFeed | None:
    try:
        return parse_feed(body, feed=FEED, content_type=None, base_url=BASE, now=NOW)
    except FeedParseError:
        return None


def _partial(body: bytes, scan: EntryScan, wanted: tuple[int, ...]) -> ParsedFeed | None:
    keys = tuple(item_key(FEED.url, guid, None, None) for guid in scan.ids)
    return parse_partial(
        scan.cut(body, wanted),
        expected={keys[i] for i in wanted},
        body_keys=keys,
        feed=FEED,
        content_type=None,
        base_url=BASE,
        now=NOW,
    )


def _agrees(body: bytes) -> str:
    """How the scan fares on ``body``: "untrusted", "refused" or "same" (else fails)."""
    scan = scan_entries(body)
    full = _full(body)
    if scan is None or full is None:
        return "untrusted"
    everything = tuple(range(len(scan.ids)))
    every_other = everything[::2]
    results = []
    for wanted in (everything, every_other, ()):
        partial = _partial(body, scan, wanted)
        if partial is None:
            results.append("refused")
            continue
        want = {item_key(FEED.url, scan.ids[i], None, None) for i in wanted}
        assert list(partial.items) == [item for item in full.items if item.key in want]
        if wanted == everything:
            # Every scanned key was verified: the body's keys are the full parse's.
            assert set(partial.keys) == {item.key for item in full.items}
        assert (partial.title, partial.ttl_s, partial.hub_url) == (
            full.title,
            full.ttl_s,
            full.hub_url,
        )
        results.append("same")
    return "same" if results[0] == "same" else "refused"


@pytest.mark.parametrize(
    "path", sorted(p for p in (DATA / "golden").iterdir() if ".expected" not in p.name)
)
def test_golden_files_give_the_same_items_in_part(path: Path) -> None:
    assert _agrees(path.read_bytes()) in ("same", "untrusted")


def test_some_golden_files_are_scanned() -> None:
    # The golden files hold odd entries on purpose (an empty <item>, no ids): most of
    # them are parsed whole, which is the point of the scan's caution.
    outcomes = [
        _agrees(p.read_bytes()) for p in (DATA / "golden").iterdir() if ".expected" not in p.name
    ]
    assert "same" in outcomes, outcomes


def test_feedparser_corpus_gives_the_same_items_or_a_full_parse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = sorted(p for p in (DATA / "feedparser-tests" / "feeds").rglob("*") if p.is_file())
    assert len(files) > 2000
    outcomes = [_agrees(path.read_bytes()) for path in files]
    with capsys.disabled():
        counts = {kind: outcomes.count(kind) for kind in ("same", "refused", "untrusted")}
        print(f"\nentry scan over {len(files)} corpus files: {counts}")
    assert outcomes.count("same") > 20  # most files test one element and carry no ids


def _news_site(n: int, atom: bool) -> bytes:
    """A body in the style of the benchmark's feed farm (and of real news sites)."""
    if atom:
        entries = "".join(
            f"<entry><title>Story {i} &amp; more</title>"
            f'<link rel="alternate" href="https://blog.example/{i}.html"/>'
            f"<id>tag:blog.example,2024:post-{i}</id><updated>2025-01-0{1 + i % 5}T10:00:00Z"
            f"</updated><author><name>Desk</name></author>"
            f'<content type="html">&lt;p&gt;Paragraph {i}.&lt;/p&gt;</content></entry>\n'
            for i in range(n, n - 20, -1)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Blog</title><id>tag:blog.example,2024:feed</id>{entries}</feed>"
        ).encode()
    items = "".join(
        f"<item>\n<title>Minister {i} resigns</title>\n<link>https://news.example/{i}</link>\n"
        f"<description>&lt;p&gt;Text {i}.&lt;/p&gt;&lt;a href=&quot;x&quot;&gt;more&lt;/a&gt;"
        f'</description>\n<category domain="https://news.example/t">World</category>\n'
        f"<pubDate>Mon, 06 Jan 2025 10:00:00 GMT</pubDate>\n<guid>https://news.example/{i}</guid>"
        f'\n<dc:creator>Desk</dc:creator>\n<media:content url="https://news.example/{i}.jpg"/>'
        f'\n<source url="https://agency.example/rss">Agency</source>\n</item>\n'
        for i in range(n, n - 30, -1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">'
        f"\n<channel>\n<title>News</title>\n<ttl>5</ttl>\n{items}</channel>\n</rss>\n"
    ).encode()


@pytest.mark.parametrize("atom", [False, True])
def test_news_site_bodies_are_parsed_in_part(atom: bool) -> None:
    assert _agrees(_news_site(100, atom)) == "same"


def test_a_partial_parse_is_small_and_keeps_the_header() -> None:
    body = rss(("a", "Alpha"), ("b", "Beta"), ("c", "Gamma"), title="Wire").encode()
    scan = scan_entries(body)
    assert scan is not None and scan.ids == ("a", "b", "c")
    parsed = _partial(body, scan, (1,))
    assert parsed is not None
    assert [item.title for item in parsed.items] == ["Beta"]
    assert parsed.title == "Wire"
    assert len(parsed.keys) == 3


def test_wrong_expectations_are_refused() -> None:
    body = rss(("a", "Alpha"), ("b", "Beta")).encode()
    scan = scan_entries(body)
    assert scan is not None
    cut = scan.cut(body, (0,))
    args = {"feed": FEED, "content_type": None, "base_url": BASE, "now": NOW}
    assert parse_partial(cut, expected={"nope"}, body_keys=("nope", "x"), **args) is None
    assert parse_partial(b"<rss><broken", expected=set(), body_keys=(), **args) is None


ITEM = "<item><guid>{}</guid><title>t</title></item>"


def _rss_with(*items: str, head: str = "") -> bytes:
    channel = f"<channel><title>x</title>{''.join(items)}</channel>"
    return f'{head}<rss version="2.0">{channel}</rss>'.encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain-1", "plain-1"),
        ("  spaced  ", "spaced"),
        ("https://x.example/?a=1&amp;b=2", "https://x.example/?a=1&b=2"),
        ("&#65;&#x42;", "AB"),
        ("<![CDATA[a&b]]>", "a&b"),
    ],
)
def test_ids_are_read_as_feedparser_reads_them(raw: str, expected: str) -> None:
    body = _rss_with(ITEM.format(raw))
    scan = scan_entries(body)
    assert scan is not None and scan.ids == (expected,)
    full = _full(body)
    assert full is not None and full.items[0].guid == expected


@pytest.mark.parametrize(
    "body",
    [
        _rss_with(ITEM.format("a"), "<item><title>no id</title></item>"),  # an entry without id
        _rss_with(ITEM.format("a&nbsp;b")),  # an entity a DTD would define
        _rss_with(ITEM.format("caf\u00e9")),  # non-ASCII: depends on the encoding
        _rss_with(ITEM.format("a"), "<!-- x -->", ITEM.format("b")),  # something between
        _rss_with("<item><guid>a</guid><guid>b</guid></item>"),  # two ids
        _rss_with("<item rdf:about='x'><guid>a</guid></item>"),  # RSS 1.0 id attribute
        _rss_with("<rss:item><guid>a</guid></rss:item>"),  # a prefixed entry
        _rss_with(ITEM.format("a"), head='<!DOCTYPE rss [<!ENTITY e "x">]>'),  # a DTD
        _rss_with(ITEM.format("a")).replace(b"<channel>", b'<channel xml:base="http://b/">'),
        _rss_with("<item><guid>a<b>c</b></guid></item>"),  # markup in an id
        _rss_with("<item><guid>a</guid>"),  # never closed
        _rss_with(),  # no entries: nothing to gain
        b"not xml at all",
    ],
)
def test_bodies_the_scan_does_not_trust(body: bytes) -> None:
    assert scan_entries(body) is None


def test_a_comment_or_cdata_holding_markup_is_skipped() -> None:
    body = _rss_with(
        "<item><guid>a</guid><description><![CDATA[<item><guid>x</guid></item>]]>"
        "</description><!-- <item> --></item>"
    )
    scan = scan_entries(body)
    assert scan is not None and scan.ids == ("a",)


def test_atom_entries_and_the_feeds_own_id() -> None:
    body = _news_site(50, atom=True)  # its <feed> has an <id> of its own too
    scan = scan_entries(body)
    full = _full(body)
    assert scan is not None and full is not None
    assert list(scan.ids) == [item.guid for item in full.items]


def test_json_feed_ids() -> None:
    items = [{"id": "a", "title": "A"}, {"id": 7, "title": "B"}]
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": items}).encode()
    scan = scan_entries(body)
    assert scan is not None and scan.ids == ("a", "7")
    cut = json.loads(scan.cut(body, (1,)))
    assert cut["items"] == [items[1]]
    broken = json.dumps({"version": "https://jsonfeed.org/version/1", "items": [{"t": 1}]})
    assert scan_entries(broken.encode()) is None
