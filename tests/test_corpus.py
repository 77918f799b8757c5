"""Robustness corpus: feedparser's own ~2,100 test feeds through parse and normalise.

Every file in ``tests/data/feedparser-tests/feeds`` (BSD-2, see the README there) goes
through :func:`monitor.parse.parse_feed`; nothing may raise except ``FeedParseError``
(``NotAFeed`` included), and every item recovered must be a sane normalised
:class:`~monitor.items.Item` that survives its JSON round trip. The figures (files,
items recovered, files rejected and why) are printed, so a change in robustness shows.

Runs in one process: about two seconds for the whole corpus.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.items import Item
from monitor.parse import FeedRef, parse_feed
from monitor.poll_errors import FeedParseError, NotAFeed

CORPUS = Path(__file__).parent / "data" / "feedparser-tests"
NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
_CONTENT_TYPE = re.compile(rb"^Header:\s*Content-type:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def _content_type(body: bytes) -> str | None:
    """The Content-Type feedparser's harness would send for this file, if it names one."""
    match = _CONTENT_TYPE.search(body[:2048])
    return match.group(1).decode("latin-1") if match else None


def _check(item: Item) -> None:
    assert item.key and item.feed_url
    assert item.title == item.title.strip()
    assert item.url == "" or item.url.startswith(("http://", "https://"))
    assert item.published is None or item.published <= NOW.replace(year=NOW.year + 1)
    assert Item.from_json(item.to_json()) == item


def test_corpus_parses_without_unexpected_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(path for path in (CORPUS / "feeds").rglob("*") if path.is_file())
    assert len(files) > 2000, "the corpus is missing: see tests/data/feedparser-tests/README.md"
    assert (CORPUS / "LICENSE").is_file()
    items = skipped = with_items = warned = 0
    rejected: Counter[str] = Counter()
    crashes: list[str] = []
    slowest = (0.0, "")
    started = time.monotonic()
    for path in files:
        relative = path.relative_to(CORPUS / "feeds").as_posix()
        body = path.read_bytes()
        began = time.monotonic()
        try:
            parsed = parse_feed(
                body,
                feed=FeedRef(url=f"http://corpus.example/{relative}"),
                content_type=_content_type(body),
                base_url=f"http://example.com/{relative}",
                now=NOW,
            )
            for item in parsed.items:
                _check(item)
        except NotAFeed:
            rejected["HTML page"] += 1
        except FeedParseError as exc:
            rejected[exc.reason.split(":")[0]] += 1
        except Exception as exc:  # the point of this test: nothing else escapes
            crashes.append(f"{relative}: {type(exc).__name__}: {exc}")
        else:
            items += len(parsed.items)
            skipped += parsed.skipped
            with_items += bool(parsed.items)
            warned += parsed.warning is not None
        slowest = max(slowest, (time.monotonic() - began, relative))
    seconds = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\ncorpus: {len(files)} files in {seconds:.1f}s; {items} items recovered from "
            f"{with_items} files ({skipped} entries skipped, {warned} files read with a "
            f"warning); {sum(rejected.values())} files rejected: {dict(rejected.most_common())}; "
            f"slowest {slowest[1]} {slowest[0] * 1000:.0f} ms"
        )
    assert not crashes, "\n".join(crashes[:20])
    # Floors from the first run (582 items, 265 files rejected: 244 of them are
    # entry-less files of feedparser's HTML-entity tests): a drop is a regression.
    assert items >= 575
    assert sum(rejected.values()) <= 270
    assert seconds < 30
