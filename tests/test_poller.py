"""The poller end to end: local feed server → real Redis → rq jobs on the items queue."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
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
from monitor.feed_state import FeedState, changed_fields
from monitor.items import Item, items_from_payload
from monitor.keys import Keys
from monitor.parse import ParsedFeed
from monitor.poller import Poller, PollOutcome
from monitor.seen import mark_seen, unseen
from monitor.shared_schedule import SharedSchedule

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

    def due_in(config: Config) -> float:
        async def body(poller: Poller) -> float:
            schedule = SharedSchedule(poller._context.client, Keys(config.redis.prefix))
            await schedule.sync(config, lease=poller.lease)
            due = await schedule.due_at(feed.url)
            assert due is not None
            return due - await schedule.server_time()

        return with_poller(config, redis_url, body)

    with_poller(config, redis_url, fail_twice)
    # A feed new to the schedule keeps the state's next poll (~30 s): still backing off.
    assert 20 < due_in(config) <= 30
    assert due_in(make_config(prefix + "fresh:", feed)) <= 0


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
    assert (outcome.error or "").startswith("not a feed: got an HTML page")
    assert [e["event"] for e in logs] == ["feed_poll_failed"]
    assert state(redis_client, prefix, url).digest is None  # re-parsed next time
    assert jobs(redis_client, prefix) == []


def test_an_html_page_that_advertises_a_feed_is_followed(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    feed_url = feed_server.set("world.rss", rss(("a", "Alpha"), ("b", "Beta")))
    page = (
        '<html><head><link rel="alternate" type="application/rss+xml" href="world.rss">'
        "</head><body>News</body></html>"
    )
    url = feed_server.set("news.html", page, content_type="text/html")
    feed = FeedConfig(url=url)
    with structlog.testing.capture_logs() as logs:
        first, second = poll_times(make_config(prefix, feed), redis_url, feed, n=2)
    assert (first.ok, first.new, first.moved_to) == (True, 2, feed_url)
    assert next(e for e in logs if e["event"] == "feed_discovered")["feed_url"] == feed_url
    assert state(redis_client, prefix, url).current_url == feed_url
    assert (second.ok, second.new) == (True, 0)  # polled at the feed's URL from now on
    assert feed_server.hits("news.html") == 1 and feed_server.hits("world.rss") == 2


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
    # Each feed's item once, none for repeats (two first polls at once may share a job).
    held = [
        item.title for job in jobs(redis_client, prefix) for item in items_from_payload(job.args[0])
    ]
    assert sorted(held) == ["Alpha", "Beta"]
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


# -- the feed's own hints, redirects, adaptive intervals ---------------------------------


def test_cache_control_max_age_and_expires_delay_the_next_poll(
    feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    cached = feed_server.set(
        "cached.xml", rss(("a", "A")), headers={"Cache-Control": "public, max-age=900"}
    )
    expires = feed_server.set(
        "expires.xml",
        rss(("b", "B")),
        headers={"Expires": formatdate(time.time() + 1200, usegmt=True)},
    )
    huge = feed_server.set("huge.xml", rss(("c", "C")), headers={"Cache-Control": "max-age=99999"})
    feeds = [FeedConfig(url=url, interval=60) for url in (cached, expires, huge)]
    config = make_config(prefix, *feeds, max_interval=3600)

    async def body(poller: Poller) -> list[PollOutcome]:
        return [await poller.poll_feed(feed) for feed in feeds]

    first, second, third = with_poller(config, redis_url, body)
    assert first.next_in_s == 900
    assert 1100 < second.next_in_s <= 1200
    assert third.next_in_s == 3600  # a hint never parks a feed past its max interval


def test_retry_after_on_503_and_429_is_obeyed(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    busy = feed_server.set("busy.xml", "later", status=503, headers={"Retry-After": "120"})
    limited = feed_server.set("limited.xml", "slow down", status=429)
    feeds = [FeedConfig(url=busy, interval=10), FeedConfig(url=limited, interval=100)]
    config = make_config(prefix, *feeds, max_backoff=3600)

    async def body(poller: Poller) -> list[PollOutcome]:
        return [await poller.poll_feed(feed) for feed in feeds]

    unavailable, too_many = with_poller(config, redis_url, body)
    assert (unavailable.status, unavailable.next_in_s) == (503, 120)
    assert too_many.status == 429
    assert too_many.interval == 200  # the learned interval doubles: we were too eager
    assert too_many.next_in_s >= 200
    assert state(redis_client, prefix, limited).interval == 200


def test_a_permanent_redirect_updates_the_url_and_keeps_the_id(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    new = feed_server.set("new.xml", rss(("a", "Alpha")))
    old = feed_server.set("old.xml", "", status=301, headers={"Location": new})
    feed = FeedConfig(url=old)
    first, second = poll_times(make_config(prefix, feed), redis_url, feed, 2)
    assert (first.ok, first.moved_to, first.new) == (True, new, 1)
    assert state(redis_client, prefix, old).current_url == new  # same key: the id is stable
    assert (second.ok, second.unchanged, second.moved_to) == (True, True, None)
    assert feed_server.hits("old.xml") == 1  # the second poll went straight to the new URL
    assert feed_server.hits("new.xml") == 2


def test_a_feed_that_publishes_often_is_polled_more_often(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    entries = [("a", "A")]
    url = feed_server.set("busy.xml", rss(*entries))
    feed = FeedConfig(url=url, interval=10, min_interval=1, max_interval=100)

    async def body(poller: Poller) -> list[PollOutcome]:
        outcomes = [await poller.poll_feed(feed)]
        for n in range(3):
            entries.extend((f"n{n}{k}", "news") for k in range(5))
            feed_server.set("busy.xml", rss(*entries))
            await asyncio.sleep(0.05)
            outcomes.append(await poller.poll_feed(feed))
        return outcomes

    outcomes = with_poller(make_config(prefix, feed), redis_url, body)
    intervals = [o.interval for o in outcomes]
    assert intervals[0] == 10  # the first poll finds a backlog, not a rate
    assert intervals[1:4] == [5, 2.5, 1.25]  # halved per poll at most, towards the rate
    assert all(1 <= i <= 100 for i in intervals)
    assert state(redis_client, prefix, url).interval == intervals[-1]


@pytest.mark.skipif(
    "ttl_s" not in getattr(ParsedFeed, "__dataclass_fields__", {}),
    reason="ParsedFeed has no ttl yet (the parse module's owner adds it)",
)
def test_rss_ttl_delays_the_next_poll(feed_server: FeedServer, redis_url: str, prefix: str) -> None:
    body = rss(("a", "A")).replace("<title>Test wire</title>", "<title>T</title><ttl>30</ttl>")
    feed = FeedConfig(url=feed_server.set("ttl.xml", body), interval=60)
    first, second = poll_times(make_config(prefix, feed), redis_url, feed, 2)
    assert first.next_in_s == 1800
    assert second.next_in_s == 1800  # unchanged body: the stored ttl still holds


def test_only_the_new_entries_of_a_changed_body_are_parsed(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    entries = [("a", "Alpha"), ("b", "Beta"), ("c", "Gamma")]
    url = feed_server.set("wire.xml", rss(*entries))
    feed = FeedConfig(url=url, name="Wire")

    async def body(poller: Poller) -> tuple[list[PollOutcome], dict[str, int]]:
        first = await poller.poll_feed(feed)
        feed_server.set("wire.xml", rss(("d", "Delta"), *entries))
        second = await poller.poll_feed(feed)
        return [first, second], poller._context.stats.take()

    (first, second), stats = with_poller(make_config(prefix, feed), redis_url, body)
    assert (first.items, first.new, second.items, second.new) == (3, 3, 4, 1)
    assert (stats["parsed_partial"], stats["parsed_whole"]) == (1, 1)  # the first: all new
    last = items_from_payload(jobs(redis_client, prefix)[-1].args[0])
    assert [(item.guid, item.title, item.summary) for item in last] == [
        ("d", "Delta", "Body of Delta")
    ]
    seen = redis_client.zcard(Keys(prefix).seen(url))
    assert seen == 4  # every entry of the body is marked seen, parsed or not


def test_a_body_the_scan_cannot_trust_is_parsed_whole(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    # One entry without a GUID: its key comes from its link, which only a parse knows.
    no_guid = "<item><title>Loose</title><link>https://example.com/loose</link></item>"
    url = feed_server.set(
        "wire.xml", rss(("a", "Alpha")).replace("</channel>", no_guid + "</channel>")
    )
    feed = FeedConfig(url=url)

    async def body(poller: Poller) -> tuple[PollOutcome, dict[str, int]]:
        outcome = await poller.poll_feed(feed)
        return outcome, poller._context.stats.take()

    outcome, stats = with_poller(make_config(prefix, feed), redis_url, body)
    assert (outcome.items, outcome.new) == (2, 2)
    assert (stats["parsed_partial"], stats["parsed_whole"]) == (0, 1)


def test_an_unchanged_poll_logs_at_debug_and_the_summary_counts_it(
    feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha")))
    feed = FeedConfig(url=url, name="Wire", interval=1)
    config = make_config(prefix, feed)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Poller(config, redis_url, grace=1).run(stop))
        await wait_for_polls(logs, 3, within=20)
        stop.set()
        await task

    # An earlier test may have configured logging at info, which drops debug lines
    # before capture_logs sees them: let everything through for this test.
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            asyncio.run(main())
    finally:
        structlog.configure(**before)
    polled = [e for e in logs if e["event"] == "feed_polled"]
    assert len(polled) >= 2
    assert polled[0]["log_level"] == "info" and not polled[0]["unchanged"]
    assert all(e["log_level"] == "debug" and e["unchanged"] for e in polled[1:])
    (summary,) = [e for e in logs if e["event"] == "poller_summary"]  # the one at stop
    assert summary["log_level"] == "info"
    assert summary["changed"] == 1 and summary["unchanged"] == len(polled) - 1
    assert (summary["failed"], summary["new_items"]) == (0, 1)
    assert summary["polls"] == len(polled)


def test_only_changed_fields_are_written_back() -> None:
    stored = FeedState(etag='"v1"', failures=0, interval=300.0, new_by_hour=((1, 2),))
    fields = {
        "etag": '"v1"',
        "failures": 0,
        "interval": 300.0,
        "last_error": None,  # already absent
        "last_status": 304,
        "ttl": None,
        "new_by_hour": '{"1":2}',  # encoded: always written when present
    }
    assert changed_fields(stored, fields) == {"last_status": 304, "new_by_hour": '{"1":2}'}
    assert changed_fields(FeedState(last_error="x"), {"last_error": None}) == {"last_error": None}


async def wait_for_polls(logs: list[dict[str, object]], n: int, *, within: float) -> None:
    """Until ``n`` feed_polled lines are captured (a loaded machine may be slow)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:  # nothing to wait on but the captured logs
        if sum(e["event"] == "feed_polled" for e in logs) >= n:
            return
        await asyncio.sleep(0.05)
