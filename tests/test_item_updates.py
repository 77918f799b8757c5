"""An entry that keeps its GUID but changes its text is sent to the workers again.

Real feed server, real Redis, the real poller: the scanned path (only changed entries
parsed), the whole-body path (a body the scan cannot trust), a changed ``<pubDate>``
alone (bytes changed, text not: nothing sent), and revisions forgotten with their keys.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis
from feedserver import FeedServer, feed_server, rss
from test_poller import jobs, make_config, with_poller

from monitor.config import FeedConfig
from monitor.items import items_from_payload
from monitor.keys import Keys
from monitor.poller import Poller
from monitor.seen import Revision, mark_seen, seen_state

__all__ = ["feed_server"]  # the fixture, imported so pytest finds it here


def _sent(redis_client: redis.Redis, prefix: str) -> list[list[tuple[str | None, str]]]:
    return [
        [(item.guid, item.title) for item in items_from_payload(job.args[0])]
        for job in jobs(redis_client, prefix)
    ]


def test_an_edited_entry_is_enqueued_again_with_its_key(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    entries = [("a", "Alpha"), ("b", "Beta"), ("c", "Gamma")]
    url = feed_server.set("wire.xml", rss(*entries))
    feed = FeedConfig(url=url, name="Wire")

    async def body(poller: Poller) -> dict[str, int]:
        await poller.poll_feed(feed)
        feed_server.set("wire.xml", rss(("a", "Alpha"), ("b", "Beta: 40 dead"), ("c", "Gamma")))
        await poller.poll_feed(feed)
        return poller._context.stats.take()

    stats = with_poller(make_config(prefix, feed), redis_url, body)
    assert _sent(redis_client, prefix) == [
        [("a", "Alpha"), ("b", "Beta"), ("c", "Gamma")],
        [("b", "Beta: 40 dead")],  # only the edited entry, with its GUID
    ]
    assert stats["parsed_partial"] == 1  # the edited entry alone was parsed


def test_an_edit_is_noticed_when_the_whole_body_is_parsed(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    loose = "<item><title>Loose</title><link>https://example.com/loose</link></item>"
    url = feed_server.set(
        "wire.xml", rss(("a", "Alpha")).replace("</channel>", loose + "</channel>")
    )
    feed = FeedConfig(url=url, name="Wire")

    async def body(poller: Poller) -> None:
        await poller.poll_feed(feed)
        edited = rss(("a", "Alpha revised")).replace("</channel>", loose + "</channel>")
        feed_server.set("wire.xml", edited)
        await poller.poll_feed(feed)

    with_poller(make_config(prefix, feed), redis_url, body)
    assert _sent(redis_client, prefix)[1] == [("a", "Alpha revised")]


def test_new_bytes_with_the_same_text_send_nothing(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha"), ("b", "Beta")))
    feed = FeedConfig(url=url, name="Wire")

    async def body(poller: Poller) -> None:
        await poller.poll_feed(feed)
        moved = rss(("a", "Alpha"), ("b", "Beta")).replace("10:00:00", "11:00:00", 1)
        feed_server.set("wire.xml", moved)
        await poller.poll_feed(feed)
        feed_server.set("wire.xml", rss(("x", "New"), ("a", "Alpha"), ("b", "Beta")))
        await poller.poll_feed(feed)

    with_poller(make_config(prefix, feed), redis_url, body)
    assert _sent(redis_client, prefix) == [[("a", "Alpha"), ("b", "Beta")], [("x", "New")]]


def test_revisions_are_forgotten_with_their_keys(redis_url: str, prefix: str) -> None:
    keys = Keys(prefix)
    seen, revs = (
        keys.seen("https://example.com/feed"),
        keys.seen_revisions("https://example.com/feed"),
    )

    async def main() -> tuple[list[bool], list[Revision | None]]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            await mark_seen(
                client,
                seen,
                ["a", "b"],
                now=1000,
                keep_seconds=50,
                revisions_key=revs,
                revisions={"a": Revision("e1", "t1"), "b": Revision("", "t2")},
            )
            await mark_seen(client, seen, ["a"], now=1100, keep_seconds=50, revisions_key=revs)
            return await seen_state(client, seen, revs, ["a", "b"])
        finally:
            await client.aclose()

    flags, stored = asyncio.run(main())
    assert flags == [True, False]
    assert stored == [Revision("e1", "t1"), None]  # "b" left the feed: both forgotten
