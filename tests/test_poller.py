"""The poller end to end: local feed server → real Redis → rq jobs on the items queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import redis.asyncio as aioredis
import structlog
from feedserver import FeedServer, feed_server, rss
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.config import Config, FeedConfig, PollerSettings, RedisSettings
from monitor.enqueue import batches
from monitor.feed_state import FeedState
from monitor.items import Item, items_from_payload
from monitor.keys import Keys
from monitor.poller import Poller, PollOutcome
from monitor.seen import mark_seen, unseen

__all__ = ["feed_server"]  # the fixture, imported so pytest finds it here

T = TypeVar("T")
UA = "wirewatch-test/1.0"


def make_config(prefix: str, *feeds: FeedConfig, **poller: float) -> Config:
    fields: dict[str, object] = {"connect_timeout": 1, "total_timeout": 2, "user_agent": UA}
    settings = PollerSettings.model_validate(fields | poller)
    return Config(redis=RedisSettings(prefix=prefix), poller=settings, feeds=list(feeds))


def with_poller(config: Config, redis_url: str, body: Callable[[Poller], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Poller(config, redis_url, rand=lambda: 0.5) as poller:
            return await body(poller)

    return asyncio.run(main())


def poll_times(config: Config, redis_url: str, feed: FeedConfig, n: int = 1) -> list[PollOutcome]:
    async def body(poller: Poller) -> list[PollOutcome]:
        return [await poller.poll_feed(feed) for _ in range(n)]

    return with_poller(config, redis_url, body)


def jobs(redis_client: redis.Redis, prefix: str) -> list[Job]:
    queue = Queue(Keys(prefix).items_queue, connection=redis_client, serializer=JSONSerializer)
    return queue.get_jobs()


def state(redis_client: redis.Redis, prefix: str, url: str) -> FeedState:
    return FeedState.from_hash(redis_client.hgetall(Keys(prefix).feed(url)))


def test_first_poll_enqueues_one_job_with_every_item_then_nothing(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha"), ("b", "Beta"), ("c", "Gamma")))
    feed = FeedConfig(url=url, name="Wire", tags=["news"])
    config = make_config(prefix, feed)

    first, second = poll_times(config, redis_url, feed, 2)

    assert (first.ok, first.status, first.items, first.new) == (True, 200, 3, 3)
    (job,) = jobs(redis_client, prefix)
    assert job.id == first.jobs[0]
    assert job.func_name == "workers.jobs.process_batch"
    assert job.timeout == config.workers.job_timeout
    assert job.retries_left == 3
    assert job.failure_ttl == 7 * 24 * 3600
    items = items_from_payload(job.args[0])
    assert [item.title for item in items] == ["Alpha", "Beta", "Gamma"]
    assert {item.feed_name for item in items} == {"Wire"}
    assert {item.tags for item in items} == {("news",)}
    assert items[0].url == "https://example.com/a"  # tracking parameter gone
    # the same body again: not parsed, nothing enqueued
    assert (second.ok, second.unchanged, second.new, second.jobs) == (True, True, 0, ())
    assert len(jobs(redis_client, prefix)) == 1
    assert feed_server.requests("wire.xml")[0]["User-Agent"] == UA


def test_conditional_get_uses_the_stored_validators(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha")), etag='"v1"')
    feed = FeedConfig(url=url)
    first, second = poll_times(make_config(prefix, feed), redis_url, feed, 2)
    assert first.new == 1
    assert (second.status, second.unchanged, second.new) == (304, True, 0)
    assert feed_server.requests("wire.xml")[1]["If-None-Match"] == '"v1"'
    assert state(redis_client, prefix, url).etag == '"v1"'
    assert len(jobs(redis_client, prefix)) == 1


def test_only_new_items_are_enqueued(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha"), ("b", "Beta")))
    feed = FeedConfig(url=url)

    async def body(poller: Poller) -> tuple[PollOutcome, PollOutcome]:
        first = await poller.poll_feed(feed)
        feed_server.set("wire.xml", rss(("c", "Gamma"), ("a", "Alpha"), ("b", "Beta")))
        return first, await poller.poll_feed(feed)

    first, second = with_poller(make_config(prefix, feed), redis_url, body)
    assert (first.new, second.items, second.new) == (2, 3, 1)
    job = Job.fetch(second.jobs[0], connection=redis_client, serializer=JSONSerializer)
    assert [item.title for item in items_from_payload(job.args[0])] == ["Gamma"]
    assert len(jobs(redis_client, prefix)) == 2


def test_items_are_batched_by_batch_size(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(*[(f"g{n}", f"Story {n}") for n in range(5)]))
    feed = FeedConfig(url=url)
    (outcome,) = poll_times(make_config(prefix, feed, batch_size=2), redis_url, feed)
    assert outcome.new == 5
    sizes = [len(job.args[0]["items"]) for job in jobs(redis_client, prefix)]
    assert sizes == [2, 2, 1]


def test_a_failing_feed_records_failures_and_backs_off(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("down.xml", "oops", status=503)
    feed = FeedConfig(url=url, interval=10)
    config = make_config(prefix, feed, max_backoff=60)

    async def body(poller: Poller) -> list[PollOutcome]:
        outcomes = [await poller.poll_feed(feed) for _ in range(3)]
        feed_server.set("down.xml", rss(("a", "Alpha")))
        return [*outcomes, await poller.poll_feed(feed)]

    with structlog.testing.capture_logs() as logs:
        *failed, recovered = with_poller(config, redis_url, body)

    assert [o.failures for o in failed] == [1, 2, 3]
    assert [o.ok for o in failed] == [False] * 3
    assert failed[0].error == "HTTP 503 Service Unavailable"
    # rand is pinned at 0.5: delay = 0.75 · min(cap, interval · 2^failures), at least the interval
    assert [o.next_in_s for o in failed] == [15, 30, 45]
    warnings = [e for e in logs if e["event"] == "feed_poll_failed"]
    assert len(warnings) == 3
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["reason"] == "HTTP 503 Service Unavailable"
    assert warnings[0]["url"] == url
    assert recovered.ok
    assert recovered.new == 1
    assert recovered.next_in_s == 10
    final = state(redis_client, prefix, url)
    assert (final.failures, final.last_error, final.last_status) == (0, None, 200)


def test_a_restarted_poller_keeps_a_failing_feeds_backoff(
    feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    url = feed_server.set("down.xml", "oops", status=503)
    feed = FeedConfig(url=url, interval=10)
    config = make_config(prefix, feed, max_backoff=60)

    async def fail_twice(poller: Poller) -> None:
        for _ in range(2):
            await poller.poll_feed(feed)

    async def due_in(poller: Poller) -> float:
        return await poller._time_until_due(feed)

    with_poller(config, redis_url, fail_twice)
    # A new process (a restart): the feed is still backing off (~30 s), not polled at once.
    assert 20 < with_poller(config, redis_url, due_in) <= 30
    assert with_poller(make_config(prefix + "fresh:", feed), redis_url, due_in) == 0


def test_failure_state_is_kept_in_redis(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    feed = FeedConfig(url="http://no-such-host.invalid/feed.xml")
    (outcome,) = poll_times(make_config(prefix, feed), redis_url, feed)
    saved = state(redis_client, prefix, feed.url)
    assert saved.failures == 1
    assert saved.last_error == "DNS lookup failed for host no-such-host.invalid"
    assert saved.last_polled is not None
    assert saved.next_poll == pytest.approx(saved.last_polled + outcome.next_in_s)
    assert saved.last_success is None


def test_a_malformed_feed_is_a_logged_failure_not_a_crash(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("page.html", "<html><body>Hi</body></html>", content_type="text/html")
    feed = FeedConfig(url=url)
    with structlog.testing.capture_logs() as logs:
        (outcome,) = poll_times(make_config(prefix, feed), redis_url, feed)
    assert not outcome.ok
    assert outcome.error == "not a feed: got an HTML page"
    assert [e["event"] for e in logs] == ["feed_poll_failed"]
    assert state(redis_client, prefix, url).digest is None  # re-parsed next time
    assert jobs(redis_client, prefix) == []


def test_summary_log_line(feed_server: FeedServer, redis_url: str, prefix: str) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha")))
    feed = FeedConfig(url=url, name="Wire", interval=60)
    with structlog.testing.capture_logs() as logs:
        poll_times(make_config(prefix, feed), redis_url, feed)
    (line,) = logs
    assert line["event"] == "feed_polled"
    assert line["log_level"] == "info"
    assert {k: line[k] for k in ("feed", "url", "status", "items", "new", "next_in_s")} == {
        "feed": "Wire",
        "url": url,
        "status": 200,
        "items": 1,
        "new": 1,
        "next_in_s": 60,
    }
    assert isinstance(line["duration_ms"], int)


def test_relative_file_feed_resolves_against_the_config_folder(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "local.xml").write_text(rss(("a", "Alpha"), ("b", "Beta")))
    feed = FeedConfig(url="file:feeds/local.xml")
    config = make_config(prefix, feed).model_copy(update={"source": tmp_path / "wirewatch.yaml"})
    first, second = poll_times(config, redis_url, feed, 2)
    assert (first.ok, first.new) == (True, 2)
    assert (second.unchanged, second.new) == (True, 0)
    assert len(jobs(redis_client, prefix)) == 1


def test_run_polls_at_the_interval_and_stops_promptly(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    fast = FeedConfig(url=feed_server.set("fast.xml", rss(("a", "Alpha"))), interval=1)
    slow = FeedConfig(url=feed_server.set("slow.xml", rss(("b", "Beta"))), interval=3600)
    off = FeedConfig(url=feed_server.set("off.xml", rss(("c", "Gamma"))), enabled=False)
    config = make_config(prefix, fast, slow, off)

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(Poller(config, redis_url).run(stop))
        deadline = time.monotonic() + 10
        # The server counts in its own thread; there is no event here to wait on.
        while feed_server.hits("fast.xml") < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        stop.set()
        started = time.monotonic()
        await task
        return time.monotonic() - started

    stopping = asyncio.run(main())
    assert feed_server.hits("fast.xml") >= 3
    assert feed_server.hits("slow.xml") == 1
    assert feed_server.hits("off.xml") == 0
    assert stopping < 10  # generous: CI machines are shared and slow
    assert len(jobs(redis_client, prefix)) == 2  # one per feed, none for repeats
    assert redis_client.keys(f"{prefix}heartbeat:poller:*") == []  # removed on stop


def test_stop_cancels_an_in_flight_poll_after_the_grace_period(
    feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    hung = FeedConfig(url=feed_server.set("hung.xml", rss(("a", "A")), delay=10), interval=1)
    config = make_config(prefix, hung, total_timeout=30)

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(Poller(config, redis_url, grace=0.2).run(stop))
        while feed_server.hits("hung.xml") < 1:  # noqa: ASYNC110 - counted in another thread
            await asyncio.sleep(0.02)
        stop.set()
        started = time.monotonic()
        await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 5  # grace 0.2 s, not the 10 s the server hangs


def test_seen_set_trims_only_keys_absent_for_the_window(redis_url: str, prefix: str) -> None:
    key = Keys(prefix).seen("https://example.com/feed")

    async def main() -> tuple[list[str], list[str]]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            await mark_seen(client, key, ["a", "b"], now=1000, keep_seconds=50)
            # "a" is still in the feed at t=1100, "b" has gone: only "b" is forgotten
            await mark_seen(client, key, ["a", "c"], now=1100, keep_seconds=50)
            members = [str(member) for member in await client.zrange(key, 0, -1)]
            return await unseen(client, key, ["a", "b", "c", "d"]), members
        finally:
            await client.aclose()

    new, members = asyncio.run(main())
    assert new == ["b", "d"]
    assert members == ["a", "c"]


def test_batches_keep_order_and_size() -> None:
    items = [Item(key=str(n), feed_url="f", feed_name="f", url="", title=str(n)) for n in range(5)]
    assert [[i.key for i in b] for b in batches(items, 2)] == [["0", "1"], ["2", "3"], ["4"]]
    assert batches([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        batches(items, 0)
