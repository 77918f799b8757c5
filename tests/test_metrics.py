"""Metrics end to end: real polls, real worker batches and deliveries, a real scrape.

Covers: poll counters by outcome and status class, fetch time and publication → fetch
after polls against the local feed server; the poller buffers (no Redis command per
poll) and flushes once a second and on demand; items enqueued, processed, duplicates,
story joins, matches per rule, alerts raised, deliveries sent / retried / dead per
channel and publication → match / delivery after real rq burst workers; queue and feed
health gauges; ``/metrics`` served by a tiny aiohttp app with the API's ``AppKey``s,
scraped over HTTP and parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from feedserver import FeedServer, rss
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from receivers import WebhookReceiver, free_port
from test_pipeline import RULE, seed_items

from monitor.api_context import KEYS, REDIS
from monitor.config import Config, FeedConfig, PollerSettings, RedisSettings
from monitor.config_loader import parse_config
from monitor.enqueue import enqueue_batches, items_queue
from monitor.feed_poll import flush_metrics
from monitor.items import Item
from monitor.keys import Keys
from monitor.metrics import POLLS, PeriodicBuffer
from monitor.metrics_export import CONTENT_TYPE, metrics_handler
from monitor.poller import Poller
from monitor.shared_schedule import SharedSchedule
from workers.worker import run_worker

T = TypeVar("T")
Samples = list[Sample]


def poller_config(prefix: str, *feeds: FeedConfig) -> Config:
    settings = PollerSettings(connect_timeout=1, total_timeout=2)
    return Config(redis=RedisSettings(prefix=prefix), poller=settings, feeds=list(feeds))


def worker_config(prefix: str, webhook: WebhookReceiver) -> Config:
    text = f"""
redis: {{prefix: "{prefix}"}}
delivery: {{retry: {{attempts: 3, first_delay: 0.01, jitter: 0}}}}
channels:
  ops: {{type: webhook, url: "{webhook.url}", secret: "{webhook.secret}", timeout: 2}}
rules:
  - {{id: china-military-aid, query: '{RULE}', channels: [ops]}}
"""
    return parse_config(text, "test.yaml", {})


def with_poller(config: Config, redis_url: str, body: Callable[[Poller], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Poller(config, redis_url, rand=lambda: 0.5) as poller:
            return await body(poller)

    return asyncio.run(main())


async def scrape(redis_url: str, prefix: str) -> tuple[str, str]:
    """Serve ``metrics_handler`` as the API app will, fetch it over HTTP: (type, text)."""
    app = web.Application()
    client = aioredis.Redis.from_url(redis_url)
    app[REDIS] = client
    app[KEYS] = Keys(prefix)
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            return response.headers["Content-Type"], await response.text()
    finally:
        await runner.cleanup()
        await client.aclose()


def samples(redis_url: str, prefix: str) -> Samples:
    content_type, text = asyncio.run(scrape(redis_url, prefix))
    assert content_type == CONTENT_TYPE
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(s.value for s in found if s.name == name and labels.items() <= s.labels.items())


def test_polls_are_counted_by_outcome_and_scraped(
    feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha"), ("b", "Beta")), etag='"v1"')
    feed = FeedConfig(url=url, name="Wire")
    broken = FeedConfig(url=feed_server.url("missing.xml"), name="Broken")
    config = poller_config(prefix, feed, broken)

    async def body(poller: Poller) -> None:
        await poller.poll_feed(feed)  # first poll: changed, its backlog not timed
        await poller.poll_feed(feed)  # 304
        feed_server.set("wire.xml", rss(("c", "Gamma"), ("a", "Alpha"), ("b", "Beta")))
        await poller.poll_feed(feed)  # changed: one new item, published long ago
        await poller.poll_feed(broken)  # 404
        await SharedSchedule(poller._context.client, Keys(prefix)).sync(config, lease=30)
        await flush_metrics(poller._context)

    with_poller(config, redis_url, body)
    found = samples(redis_url, prefix)

    polls = "wirewatch_polls_total"
    assert value(found, polls, outcome="changed", status="2xx") == 2
    assert value(found, polls, outcome="unchanged", status="3xx") == 1
    assert value(found, polls, outcome="failed", status="4xx") == 1
    assert value(found, "wirewatch_fetch_duration_seconds_count", result="ok") == 3
    assert value(found, "wirewatch_fetch_duration_seconds_count", result="error") == 1
    assert value(found, "wirewatch_fetch_duration_seconds_sum") > 0
    # Only the new item of the second changed poll: published 2025-01-06, long ago.
    assert value(found, "wirewatch_publish_to_fetch_seconds_count") == 1
    assert value(found, "wirewatch_publish_to_fetch_seconds_bucket", le="3600.0") == 0
    assert value(found, "wirewatch_publish_to_fetch_seconds_bucket", le="+Inf") == 1
    assert value(found, "wirewatch_items_enqueued_total") == 3  # a, b, then c
    assert value(found, "wirewatch_queue_jobs", queue="items", state="queued") == 2
    assert value(found, "wirewatch_feeds", health="healthy") == 1
    assert value(found, "wirewatch_feeds", health="degraded") == 1


def commands(client: redis.Redis, *names: str) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)


def test_the_poller_buffers_metrics_and_flushes_them_in_one_round_trip(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.set("wire.xml", rss(("a", "Alpha")), etag='"v1"')
    feed = FeedConfig(url=url, name="Wire")
    config = poller_config(prefix, feed)
    polls = 40
    key = Keys(prefix).metric(POLLS.name)

    async def body(poller: Poller) -> tuple[int, int, int, int]:
        buffer = poller._context.metrics
        buffer.every = 3600.0  # no periodic flush while we count
        await poller.poll_feed(feed)
        await flush_metrics(poller._context)
        before = commands(redis_client, "hincrby", "hincrbyfloat", "exec")
        transactions = commands(redis_client, "exec")
        for _ in range(polls):
            await poller.poll_feed(feed)  # unchanged: 304
        during = commands(redis_client, "hincrby", "hincrbyfloat", "exec") - before
        written = redis_client.hgetall(key)
        await flush_metrics(poller._context)
        flushed = commands(redis_client, "exec") - transactions
        buffer.every = 0.0  # now the next poll to end writes its own count
        await poller.poll_feed(feed)
        return during, len(written), flushed, int(redis_client.hget(key, '["unchanged","3xx"]'))

    during, fields, flushed, unchanged = with_poller(config, redis_url, body)
    assert during == 0  # nothing written per poll
    assert fields == 1  # only the first (changed) poll's count, flushed before
    assert flushed == 1  # the 40 polls: one transaction
    assert unchanged == polls + 1


def test_a_failed_flush_keeps_the_counts(redis_url: str, prefix: str) -> None:
    async def main() -> str | None:
        buffer = PeriodicBuffer()
        buffer.inc(POLLS, "failed", "none", by=2)
        down = aioredis.Redis.from_url("redis://127.0.0.1:1")  # nobody listens
        with pytest.raises(redis.ConnectionError):
            await buffer.flush(down, Keys(prefix))
        await down.aclose()
        up = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await buffer.flush(up, Keys(prefix))  # the counts survived the failure
        stored = await up.hget(Keys(prefix).metric(POLLS.name), '["failed","none"]')
        await up.aclose()
        return stored

    assert asyncio.run(main()) == "2"


def fresh_items(feed_url: str, age: float) -> list[Item]:
    published = datetime.now(UTC) - timedelta(seconds=age)
    return [replace(i, published=published) for i in seed_items(feed_url)]


def enqueue(connection: redis.Redis, config: Config, items: list[Item]) -> None:
    queue = items_queue(connection, Keys(config.redis.prefix))
    enqueue_batches(queue, items, batch_size=100, job_timeout=300)


def test_a_worker_batch_and_its_delivery_are_counted(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    config = worker_config(prefix, webhook_receiver)
    items = fresh_items("https://a.test/feed", age=20)
    enqueue(redis_client, config, items)
    started = time.time()
    run_worker(config, redis_url, burst=True)
    webhook_receiver.wait_for(1)
    # The same items from another outlet: exact duplicates (same GUIDs and URLs).
    enqueue(redis_client, config, fresh_items("https://b.test/feed", age=20))
    run_worker(config, redis_url, burst=True)
    took = time.time() - started

    found = samples(redis_url, prefix)
    n = len(items)
    assert value(found, "wirewatch_items_enqueued_total") == 2 * n
    assert value(found, "wirewatch_items_processed_total", result="new") == n
    assert value(found, "wirewatch_items_processed_total", result="duplicate") == n
    assert value(found, "wirewatch_items_processed_total", result="failed") == 0
    assert value(found, "wirewatch_rule_matches_total", rule="china-military-aid") >= 1
    raised = value(found, "wirewatch_alerts_raised_total", rule="china-military-aid", kind="new")
    assert raised == 1
    sent = {"channel": "ops", "kind": "alert"}
    assert value(found, "wirewatch_deliveries_total", result="sent", **sent) == 1
    assert value(found, "wirewatch_deliveries_total", result="retried", **sent) == 0
    matched = value(found, "wirewatch_publish_to_match_seconds_count")
    assert matched >= 1
    assert value(found, "wirewatch_publish_to_match_seconds_bucket", le="10.0") == 0
    assert value(found, "wirewatch_publish_to_match_seconds_bucket", le="3600.0") == matched
    delivery = value(found, "wirewatch_publish_to_delivery_seconds_sum", channel="ops")
    assert 20 <= delivery <= 20 + took + 1
    assert value(found, "wirewatch_queue_jobs", queue="items", state="queued") == 0
    assert value(found, "wirewatch_queue_jobs", queue="alerts", state="queued") == 0


def test_story_joins_are_counted(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    config = worker_config(prefix, webhook_receiver)
    [first, *_] = fresh_items("https://a.test/feed", age=5)
    copy = Item(
        key="https://b.test/feed#other",
        feed_url="https://b.test/feed",
        feed_name="Other wire",
        url="https://b.test/story",
        title=first.title + " - report",
        summary=first.summary,
        guid="other",
    )
    enqueue(redis_client, config, [first])
    run_worker(config, redis_url, burst=True)
    enqueue(redis_client, config, [copy])
    run_worker(config, redis_url, burst=True)
    found = samples(redis_url, prefix)
    assert value(found, "wirewatch_items_processed_total", result="new") == 2
    assert value(found, "wirewatch_story_joins_total") == 1


def test_retried_and_dead_deliveries_are_counted_per_channel(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.respond_with(503, 503, 503)  # three tries in all: dead
    config = worker_config(prefix, webhook_receiver)
    enqueue(redis_client, config, fresh_items("https://a.test/feed", age=5))
    run_worker(config, redis_url, burst=True)
    webhook_receiver.wait_for(3)
    found = samples(redis_url, prefix)
    ops = {"channel": "ops", "kind": "alert"}
    assert value(found, "wirewatch_deliveries_total", result="retried", **ops) == 2
    assert value(found, "wirewatch_deliveries_total", result="dead", **ops) == 1
    assert value(found, "wirewatch_deliveries_total", result="sent", **ops) == 0
    assert value(found, "wirewatch_publish_to_delivery_seconds_count") == 0
