"""The seed feed: a valid RSS feed on which the design rule matches the design article only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import feedparser
import pytest
from w3lib.html import remove_tags, replace_entities

from monitor.config import RuleConfig
from monitor.items import Item
from workers.match import compile_rules

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
WORLD = SEEDS / "feeds" / "world.xml"
DESIGN_QUERY = (
    'China AND ("military aid" OR "military assistance" OR weapons) AND (Russia OR Moscow)'
)
DESIGN_LINK = "https://seed.wirewatch.example/2022/03/14/russia-sought-china-military-aid"


@pytest.fixture(scope="module")
def feed() -> Any:
    return feedparser.parse(WORLD.read_bytes())


def _text(value: str) -> str:
    return replace_entities(remove_tags(value))


def _item(entry: Any) -> Item:
    return Item(
        key=entry.id,
        feed_url=WORLD.as_uri(),
        feed_name="wirewatch seed wire",
        url=entry.link,
        title=_text(entry.title),
        summary=_text(entry.summary),
        guid=entry.id,
    )


def test_world_is_a_valid_rss_feed(feed: Any) -> None:
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "rss20"
    assert feed.feed.title == "wirewatch seed wire"
    entries = feed.entries
    assert len(entries) >= 13
    for entry in entries:
        assert entry.title
        assert entry.link
        assert entry.published_parsed
        assert 60 <= len(_text(entry.summary).split()) <= 700
    for attribute in ("id", "link", "published"):
        values = [entry[attribute] for entry in entries]
        assert len(set(values)) == len(values), f"duplicate {attribute}"
    assert all(not entry.guidislink for entry in entries)


def test_the_design_article_is_the_first_item(feed: Any) -> None:
    article = feed.entries[0]
    assert article.title == "Russia sought China military aid for Ukraine war, says US"
    assert article.link == DESIGN_LINK
    assert article.source.title == "Bloomberg"
    assert article.published_parsed[:3] == (2022, 3, 14)
    body = _text(article.summary)
    assert body.startswith("US officials say Russia has asked China for military assistance")
    assert body.rstrip().endswith("at a delicate time.")
    assert "Leave a Reply" not in body
    assert "Send this to a friend" not in body
    assert "\nBloomberg\n" not in body


def test_the_design_rule_matches_the_design_article_only(feed: Any) -> None:
    rules = compile_rules(
        [RuleConfig(id="china-military-aid", query=DESIGN_QUERY, channels=["log"])]
    )
    matched = {}
    for entry in feed.entries:
        for match in rules.match(_item(entry)):
            matched[entry.link] = match
    assert list(matched) == [DESIGN_LINK]

    match = matched[DESIGN_LINK]
    assert match.rule_id == "china-military-aid"
    assert match.query == DESIGN_QUERY
    article = _item(feed.entries[0])
    seen = {(term.term, term.field, term.text) for term in match.terms}
    assert {("China", "title", "China"), ("Russia", "title", "Russia")} <= seen
    assert ("military aid", "title", "military aid") in seen
    assert ("military assistance", "summary", "military assistance") in seen
    for term in match.terms:
        source = article.title if term.field == "title" else article.summary
        assert source[term.start : term.end] == term.text
