"""Feed health: the states, the rolling items-per-day count, one notice per transition."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis
import structlog
from feedserver import FeedServer, rss
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.config import Config, FeedConfig, LogChannel, PollerSettings, RedisSettings
from monitor.feed_state import FeedState, record_poll
from monitor.health import ANNOUNCE_GRACE_S, classify, count_new, is_notice, items_per_day
from monitor.keys import Keys
from monitor.poller import Poller, PollOutcome


def make_config(prefix: str, *feeds: FeedConfig, **poller: object) -> Config:
    fields: dict[str, object] = {"connect_timeout": 1, "total_timeout": 2, "max_backoff": 60}
    settings = PollerSettings.model_validate(fields | poller)
    return Config(
        redis=RedisSettings(prefix=prefix),
        poller=settings,
        feeds=list(feeds),
        channels={"ops": LogChannel(type="log")},
    )


def notices(redis_client: redis.Redis, prefix: str) -> list[Job]:
    queue = Queue(Keys(prefix).alerts_queue, connection=redis_client, serializer=JSONSerializer)
    return queue.get_jobs()


def test_classify() -> None:
    rules = {"degraded_after": 1, "failing_after": 3}
    assert [classify(n, status=503, **rules) for n in range(5)] == [
        "healthy",
        "degraded",
        "degraded",
        "failing",
        "failing",
    ]
    assert classify(1, status=410, **rules) == "gone"
    assert classify(9, status=410, **rules) == "gone"


def test_only_breaking_and_recovering_are_news() -> None:
    assert is_notice(None, "failing") and is_notice("degraded", "failing")
    assert is_notice("healthy", "gone") and is_notice("failing", "gone")
    assert is_notice("failing", "healthy") and is_notice("gone", "healthy")
    assert not is_notice(None, "healthy")
    assert not is_notice("healthy", "degraded") and not is_notice("degraded", "healthy")
    assert not is_notice("failing", "failing") and not is_notice("gone", "gone")
    assert not is_notice("failing", "degraded")  # (cannot happen: a success resets)


def test_items_per_day_is_a_rolling_24_hours() -> None:
    day = 86400.0
    buckets = count_new((), 10 * day, 5)
    buckets = count_new(buckets, 10 * day + 3600, 2)
    buckets = count_new(buckets, 10 * day + 7200, 0)
    assert items_per_day(buckets, 10 * day + 7200) == 7
    assert items_per_day(buckets, 11 * day) == 2  # the first hour has left the window
    assert items_per_day(buckets, 12 * day) == 0
    assert count_new(buckets, 12 * day, 1) == ((12 * 24, 1),)  # old hours are dropped


def test_one_notice_when_a_feed_breaks_and_one_when_it_recovers(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("down.xml", "oops", status=503)
    feed = FeedConfig(url=url, name="Down wire", interval=10)
    config = make_config(prefix, feed, notify_channel="ops")

    async def main() -> list[PollOutcome]:
        async with Poller(config, redis_url, rand=lambda: 0.5) as poller:
            outcomes = [await poller.poll_feed(feed) for _ in range(5)]
            feed_server.set("down.xml", rss(("a", "Alpha")))
            outcomes += [await poller.poll_feed(feed) for _ in range(2)]
            feed_server.set("down.xml", "oops", status=503)
            outcomes.append(await poller.poll_feed(feed))  # degraded only: no notice
            return outcomes

    with structlog.testing.capture_logs() as logs:
        outcomes = asyncio.run(main())

    assert [o.health for o in outcomes] == [
        "degraded",
        "degraded",
        "failing",
        "failing",
        "failing",
        "healthy",
        "healthy",
        "degraded",
    ]
    changes = [e for e in logs if e["event"] == "feed_health_changed"]
    assert [(e["previous"], e["state"]) for e in changes] == [
        ("degraded", "failing"),
        ("failing", "healthy"),
    ]
    assert changes[0]["log_level"] == "warning"
    jobs = notices(redis_client, prefix)
    assert [job.func_name for job in jobs] == ["workers.jobs.feed_notice"] * 2
    broke, recovered = (job.args[0] for job in jobs)
    assert broke["v"] == 1
    assert {k: broke[k] for k in ("feed", "url", "state", "previous", "reason", "channel")} == {
        "feed": "Down wire",
        "url": url,
        "state": "failing",
        "previous": "degraded",
        "reason": "HTTP 503 Service Unavailable",
        "channel": "ops",
    }
    assert broke["at"].endswith("Z")
    assert (recovered["state"], recovered["previous"], recovered["reason"]) == (
        "healthy",
        "failing",
        None,
    )


def test_without_a_notify_channel_only_the_log_line(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    feed = FeedConfig(url=feed_server.set("down.xml", "oops", status=500), interval=10)
    config = make_config(prefix, feed, failing_after=1)

    async def main() -> None:
        async with Poller(config, redis_url) as poller:
            await poller.poll_feed(feed)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(main())
    assert [e["state"] for e in logs if e["event"] == "feed_health_changed"] == ["failing"]
    assert notices(redis_client, prefix) == []


def test_410_marks_a_feed_gone_polled_rarely_and_it_can_come_back(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("gone.xml", "gone", status=410)
    feed = FeedConfig(url=url, interval=10)
    config = make_config(prefix, feed, notify_channel="ops", gone_interval=86400)

    async def main() -> list[PollOutcome]:
        async with Poller(config, redis_url) as poller:
            outcomes = [await poller.poll_feed(feed) for _ in range(2)]
            feed_server.set("gone.xml", rss(("a", "A")))
            return [*outcomes, await poller.poll_feed(feed)]

    gone, still, back = asyncio.run(main())
    assert (gone.health, gone.status, gone.next_in_s) == ("gone", 410, 86400)
    assert (still.health, still.next_in_s) == ("gone", 86400)
    assert back.health == "healthy"
    saved = FeedState.from_hash(redis_client.hgetall(Keys(prefix).feed(url)))
    assert (saved.health, saved.failures) == ("healthy", 0)
    assert [(j.args[0]["previous"], j.args[0]["state"]) for j in notices(redis_client, prefix)] == [
        (None, "gone"),
        ("gone", "healthy"),
    ]


def test_new_items_are_counted_per_day_but_not_the_first_backlog(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "A"), ("b", "B")))
    feed = FeedConfig(url=url, interval=10)

    async def main() -> None:
        async with Poller(make_config(prefix, feed), redis_url) as poller:
            await poller.poll_feed(feed)
            feed_server.set("wire.xml", rss(("c", "C"), ("d", "D"), ("e", "E"), ("a", "A")))
            await poller.poll_feed(feed)

    asyncio.run(main())
    saved = FeedState.from_hash(redis_client.hgetall(Keys(prefix).feed(url)))
    assert saved.last_success is not None
    assert items_per_day(saved.new_by_hour, saved.last_success) == 3


def test_a_change_its_poller_never_announced_is_announced_once_by_a_sweep(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    """A poller that dies between recording a feed's break and enqueueing its notice
    (or meets a Redis error there) leaves the change marked; another poller's sweep
    announces it, once, after the grace period that belongs to the poll itself."""
    url = feed_server.set("dead.xml", "gone", status=410)
    feed = FeedConfig(url=url, name="Dead wire", interval=10)
    config = make_config(prefix, feed, notify_channel="ops")

    async def main() -> tuple[int, int, int]:
        # What the dead poller's poll did: its outcome recorded, nothing announced.
        client = aioredis.from_url(redis_url)
        fields = {"last_status": 410, "last_error": "HTTP 410 Gone", "failures": 1}
        change = await record_poll(client, Keys(prefix).feed(url), fields, health="gone")
        await client.aclose()
        assert change is not None and change.previous is None
        later = time.time() + ANNOUNCE_GRACE_S + 1
        async with Poller(config, redis_url) as poller:
            fresh = await poller.sweep_notices(time.time())  # still the poll's to announce
            return fresh, await poller.sweep_notices(later), await poller.sweep_notices(later)

    assert asyncio.run(main()) == (0, 1, 0)
    (job,) = notices(redis_client, prefix)
    notice = job.args[0]
    assert (notice["feed"], notice["state"], notice["previous"]) == ("Dead wire", "gone", None)
    assert (notice["reason"], notice["channel"]) == ("HTTP 410 Gone", "ops")
    assert redis_client.hget(Keys(prefix).feed(url), "announce_from") is None


def test_an_announced_change_leaves_nothing_for_the_sweep(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("down.xml", "oops", status=503)
    feed = FeedConfig(url=url, interval=10)
    config = make_config(prefix, feed, notify_channel="ops", failing_after=1)

    async def main() -> int:
        async with Poller(config, redis_url) as poller:
            assert (await poller.poll_feed(feed)).health == "failing"
            return await poller.sweep_notices(time.time() + ANNOUNCE_GRACE_S + 1)

    assert asyncio.run(main()) == 0
    assert [j.args[0]["state"] for j in notices(redis_client, prefix)] == ["failing"]
