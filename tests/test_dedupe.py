"""Exact dedupe against the session's real Redis."""

from __future__ import annotations

import redis

from monitor.items import Item
from monitor.keys import Keys
from workers.dedupe import dedupe, release

SUMMARY = "A long enough summary of a wire story about the harbour, the ships and the weather."


def item(
    feed: str, guid: str | None, url: str, title: str = "Harbour reopens", summary: str = SUMMARY
) -> Item:
    return Item(
        key=f"{feed}#{guid or url}",
        feed_url=feed,
        feed_name=feed,
        url=url,
        title=title,
        summary=summary,
        guid=guid,
    )


def test_same_url_on_another_feed_is_a_duplicate(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    first = item("https://a.test/feed", "1", "https://news.test/story")
    second = item("https://b.test/feed", "x9", "https://news.test/story", title="Other title")
    assert dedupe(redis_client, keys, [first], 60).new == [first]
    result = dedupe(redis_client, keys, [second], 60)
    assert result.new == [] and result.duplicates == [(second, first.key)]


def test_same_text_elsewhere_is_a_duplicate(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    first = item("https://a.test/feed", "1", "https://a.test/1")
    copy = item("https://b.test/feed", "2", "https://b.test/2", title="HARBOUR   reopens")
    dedupe(redis_client, keys, [first], 60)
    assert dedupe(redis_client, keys, [copy], 60).duplicates == [(copy, first.key)]


def test_bare_guids_are_only_unique_within_their_feed(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    a = item("https://a.test/feed", "12345", "https://a.test/x", title="Budget vote", summary="")
    b = item("https://b.test/feed", "12345", "https://b.test/y", title="Cup final", summary="")
    assert dedupe(redis_client, keys, [a, b], 60).new == [a, b]
    # A URL-shaped GUID is global.
    c = item("https://a.test/feed", "https://wire.test/s/1", "https://a.test/z", "One", "")
    d = item("https://b.test/feed", "https://wire.test/s/1", "https://b.test/w", "Two", "")
    result = dedupe(redis_client, keys, [c, d], 60)
    assert result.new == [c] and result.duplicates == [(d, c.key)]


def test_short_headlines_without_summary_are_not_content_duplicates(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    monday = item("https://a.test/feed", "mon", "https://a.test/mon", "Live updates", "")
    tuesday = item("https://a.test/feed", "tue", "https://a.test/tue", "Live updates", "")
    assert dedupe(redis_client, keys, [monday, tuesday], 60).new == [monday, tuesday]


def test_a_retried_batch_is_processed_again(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    batch = [item("https://a.test/feed", "1", "https://a.test/1")]
    assert dedupe(redis_client, keys, batch, 60).new == batch
    assert dedupe(redis_client, keys, batch, 60).new == batch  # its own claims


def test_an_entry_listed_twice_in_one_batch_counts_once(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    entry = item("https://a.test/feed", "1", "https://a.test/1")
    result = dedupe(redis_client, keys, [entry, entry], 60)
    assert result.new == [entry] and result.duplicates == []


def test_release_gives_claims_back_to_other_feeds(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    failed = item("https://a.test/feed", "1", "https://news.test/story")
    copy = item("https://b.test/feed", "2", "https://news.test/story")
    dedupe(redis_client, keys, [failed], 60)
    assert release(redis_client, keys, [failed]) >= 2
    assert dedupe(redis_client, keys, [copy], 60).new == [copy]
    assert release(redis_client, keys, [failed]) == 0  # not its claims any more
