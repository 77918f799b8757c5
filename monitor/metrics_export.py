"""``/metrics``: the Redis-held metrics and a few gauges, in Prometheus text format.

Role: the read side of :mod:`monitor.metrics`. One scrape is one Redis round trip
(:func:`read_snapshot`: every metric hash, the rq queues' lengths and registries, and a
Lua count of the feeds by health over the schedule), then a :class:`SnapshotCollector` on
a private ``CollectorRegistry`` renders it with ``prometheus_client.generate_latest`` —
prometheus_client's own families, so names, escaping and the histogram shape are right.

Gauges read at scrape time (nothing writes them):

- ``wirewatch_queue_jobs{queue, state}``: jobs per rq queue (``items``, ``alerts``) that
  are ``queued``, ``started``, ``scheduled`` (delivery retries) or ``failed`` (kept for
  inspection);
- ``wirewatch_feeds{health}``: scheduled feeds by health (``unknown``: not polled yet).

The handler reads the app's Redis client and keys through :mod:`monitor.api_context`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric as Family
from rq.queue import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from monitor.api_context import KEYS, REDIS
from monitor.keys import Keys
from monitor.metrics import STORED, Metric
from monitor.redis_text import as_text

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
HEALTH_STATES = ("healthy", "degraded", "failing", "gone", "unknown")
QUEUE_STATES = ("queued", "started", "scheduled", "failed")

# KEYS[1] the schedule; ARGV[1] the feed hash prefix. Returns health, count, … pairs.
_FEEDS_BY_HEALTH = """
local counts = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local health = redis.call('HGET', ARGV[1] .. id, 'health') or 'unknown'
  counts[health] = (counts[health] or 0) + 1
end
local out = {}
for health, n in pairs(counts) do out[#out + 1] = health; out[#out + 1] = n end
return out
"""

Hash = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scrape shows, read from Redis in one round trip."""

    stored: Mapping[str, Hash] = field(default_factory=dict)  # metric name → its hash
    queues: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, state) → jobs
    feeds: dict[str, int] = field(default_factory=dict)  # health → feeds


def _rq_keys(name: str) -> dict[str, str]:
    """rq's keys of one queue (rq names them, under ``rq:``, whatever our prefix)."""
    return {
        "queued": f"{Queue.redis_queue_namespace_prefix}{name}",
        "started": StartedJobRegistry.key_template.format(name),
        "scheduled": ScheduledJobRegistry.key_template.format(name),
        "failed": FailedJobRegistry.key_template.format(name),
    }


async def read_snapshot(client: aioredis.Redis, keys: Keys) -> Snapshot:
    """One pipelined round trip: the metric hashes, queue sizes, feeds by health."""
    queues = {"items": keys.items_queue, "alerts": keys.alerts_queue}
    pipe = client.pipeline(transaction=False)
    for metric in STORED:
        pipe.hgetall(keys.metric(metric.name))
    for name in queues.values():
        for state, key in _rq_keys(name).items():
            (pipe.llen if state == "queued" else pipe.zcard)(key)
    pipe.eval(_FEEDS_BY_HEALTH, 1, keys.schedule(), keys.feed_by_id(""))
    replies = await pipe.execute()
    stored = {
        metric.name: {as_text(k): as_text(v) for k, v in reply.items()}
        for metric, reply in zip(STORED, replies, strict=False)
    }
    sizes = iter(replies[len(STORED) : -1])
    queue_jobs = {(queue, state): int(next(sizes)) for queue in queues for state in QUEUE_STATES}
    pairs = [as_text(value) for value in replies[-1]]
    feeds = dict.fromkeys(HEALTH_STATES, 0)
    feeds |= {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    return Snapshot(stored, queue_jobs, feeds)


class SnapshotCollector:
    """A prometheus_client collector over one :class:`Snapshot` (built per scrape)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Family]:
        for metric in STORED:
            stored = self.snapshot.stored.get(metric.name, {})
            if metric.kind == "counter":
                yield _counter(metric, stored)
            else:
                yield _histogram(metric, stored)
        queues = GaugeMetricFamily(
            "wirewatch_queue_jobs",
            "Jobs per rq queue (items, alerts) by state (queued, started, scheduled, failed).",
            labels=("queue", "state"),
        )
        for (queue, state), jobs in self.snapshot.queues.items():
            queues.add_metric((queue, state), jobs)
        yield queues
        feeds = GaugeMetricFamily(
            "wirewatch_feeds",
            "Scheduled feeds by health (healthy, degraded, failing, gone; unknown: not polled).",
            labels=("health",),
        )
        for health, n in sorted(self.snapshot.feeds.items()):
            feeds.add_metric((health,), n)
        yield feeds


def _labels(field_: str, metric: Metric) -> Sequence[str] | None:
    """A stored label set, or ``None`` when it does not fit the metric (written by an
    older or newer wirewatch with other labels): skipped rather than a broken scrape."""
    try:
        values = json.loads(field_)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != len(metric.labels):
        return None
    return [str(value) for value in values]


def _counter(metric: Metric, stored: Hash) -> CounterMetricFamily:
    family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
    for field_, value in sorted(stored.items()):
        labels = _labels(field_, metric)
        if labels is not None:
            family.add_metric(labels, float(value))
    return family


def _histogram(metric: Metric, stored: Hash) -> HistogramMetricFamily:
    """Non-cumulative stored buckets → Prometheus's cumulative ones, ``+Inf`` = count."""
    family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
    series: dict[str, tuple[dict[float, float], list[float]]] = {}
    for field_, value in stored.items():
        labels, _, part = field_.rpartition("|")
        buckets, total = series.setdefault(labels, ({}, [0.0]))
        if part == "sum":
            total[0] = float(value)
            continue
        try:
            bound = math.inf if part == "+Inf" else float(part)
        except ValueError:
            continue
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    for labels_field, (buckets, total) in sorted(series.items()):
        values = _labels(labels_field, metric)
        if values is None:
            continue
        bounds = sorted(set(buckets) | {*map(float, metric.buckets), math.inf})
        running, cumulative = 0.0, []
        for bound in bounds:
            running += buckets.get(bound, 0.0)
            cumulative.append(("+Inf" if bound == math.inf else repr(bound), running))
        family.add_metric(values, cumulative, total[0])
    return family


async def render(client: aioredis.Redis, keys: Keys) -> bytes:
    """The Prometheus text of everything wirewatch measures, as of now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(await read_snapshot(client, keys)))
    return generate_latest(registry)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``; 503 when Redis cannot be read (Prometheus marks the scrape down)."""
    try:
        body = await render(request.app[REDIS], request.app[KEYS])
    except redis.RedisError as exc:
        return web.Response(status=503, text=f"redis unavailable: {exc}\n")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
