"""Metrics shared by every process: counters and histograms kept in Redis.

Why Redis and not each process's memory: rq forks a work-horse per job (its counters
would die with it) and pollers and workers run on many machines, while Prometheus wants
one number per series. So every process adds its increments to one hash per metric
(``Keys.metric(name)``) and ``/metrics`` (:mod:`monitor.metrics_export`) reads them.

Storage, per metric hash: field = the label values as a JSON list (``["changed","3xx"]``,
``[]`` without labels) → count. A histogram stores *non-cumulative* bucket counts,
field ``{labels}|{le}`` (each observation adds 1 to one bucket, ``+Inf`` included), and
``{labels}|sum``; the exporter makes them cumulative.

Writers never pay a round trip per event: a :class:`MetricsBuffer` collects increments in
memory and :meth:`MetricsBuffer.write` adds them to a pipeline the caller executes —
the poller every :data:`FLUSH_EVERY` seconds (:class:`PeriodicBuffer`), a worker once per
batch or delivery. Counts are at-least-once, like the jobs that make them: a batch rq
runs again counts its items again.
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

import redis
import redis.asyncio as aioredis

from monitor.keys import Keys

FLUSH_EVERY = 1.0  # seconds between two flushes of a poller's buffer
# News latency: from a tenth of a second (push, 1 s polls) to an hour (slow feeds).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashed by identity (hot path)
class Metric:
    """One metric: its Prometheus name, type, help text, label names and buckets."""

    name: str
    kind: Literal["counter", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


POLLS = Metric(
    "wirewatch_polls_total",
    "counter",
    "Polls by outcome (changed, unchanged, failed) and HTTP status class (2xx … 5xx, none).",
    ("outcome", "status"),
)
FETCH_SECONDS = Metric(
    "wirewatch_fetch_duration_seconds",
    "histogram",
    "Time of one fetch (request to body read; waiting for a connection slot not included).",
    ("result",),
    FETCH_BUCKETS,
)
ITEMS_ENQUEUED = Metric(
    "wirewatch_items_enqueued_total",
    "counter",
    "Items handed to the workers (new and edited items, polls and WebSub pushes).",
)
ITEMS_PROCESSED = Metric(
    "wirewatch_items_processed_total",
    "counter",
    "Items through a worker batch by result (new, duplicate: an exact copy, failed).",
    ("result",),
)
STORY_JOINS = Metric(
    "wirewatch_story_joins_total",
    "counter",
    "New items that joined a story already seen (near-duplicates from any outlet).",
)
RULE_MATCHES = Metric(
    "wirewatch_rule_matches_total", "counter", "Items each rule matched.", ("rule",)
)
ALERTS_RAISED = Metric(
    "wirewatch_alerts_raised_total",
    "counter",
    "Alerts raised, by rule and kind (new, follow_up, update); a repeat of one is not counted.",
    ("rule", "kind"),
)
DELIVERIES = Metric(
    "wirewatch_deliveries_total",
    "counter",
    "Delivery attempts by channel, kind (alert, digest, notice) and result (sent, retried, dead).",
    ("channel", "kind", "result"),
)
PUBLISH_TO_FETCH = Metric(
    "wirewatch_publish_to_fetch_seconds",
    "histogram",
    "From an item's published time to the poll that found it (a feed's first poll not counted).",
    (),
    LATENCY_BUCKETS,
)
PUBLISH_TO_MATCH = Metric(
    "wirewatch_publish_to_match_seconds",
    "histogram",
    "From an item's published time to a worker matching it to a rule (once per item).",
    (),
    LATENCY_BUCKETS,
)
PUBLISH_TO_DELIVERY = Metric(
    "wirewatch_publish_to_delivery_seconds",
    "histogram",
    "From an item's published time to its alert's delivery, per channel (digests not counted).",
    ("channel",),
    LATENCY_BUCKETS,
)
STORED: tuple[Metric, ...] = (
    POLLS,
    FETCH_SECONDS,
    ITEMS_ENQUEUED,
    ITEMS_PROCESSED,
    STORY_JOINS,
    RULE_MATCHES,
    ALERTS_RAISED,
    DELIVERIES,
    PUBLISH_TO_FETCH,
    PUBLISH_TO_MATCH,
    PUBLISH_TO_DELIVERY,
)


@lru_cache(maxsize=4096)
def label_field(values: tuple[str, ...]) -> str:
    """The hash field of one label set (cached: the same few sets come again and again)."""
    return json.dumps(list(values), separators=(",", ":"))


def le_text(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.1``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


@lru_cache(maxsize=64)
def _bounds(buckets: tuple[float, ...]) -> tuple[str, ...]:
    return (*(le_text(b) for b in buckets), "+Inf")


def status_class(status: int | None) -> str:
    """``2xx`` … ``5xx`` for an HTTP status, ``none`` when there was none (network, file)."""
    return f"{status // 100}xx" if status is not None and 100 <= status < 600 else "none"


class _Pipe(Protocol):
    """What :meth:`MetricsBuffer.write` needs of a sync or async Redis pipeline."""

    def hincrby(self, name: str, key: str, amount: int = 1) -> object: ...

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> object: ...


_Counts = dict[tuple[Metric, tuple[str, ...], int], int]  # bucket -1: a counter
_Sums = dict[tuple[Metric, tuple[str, ...]], float]


class MetricsBuffer:
    """Increments held in memory until written; cheap enough for every poll."""

    __slots__ = ("_counts", "_sums")

    def __init__(self) -> None:
        self._counts: _Counts = {}
        self._sums: _Sums = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def inc(self, metric: Metric, *labels: str, by: int = 1) -> None:
        key = (metric, labels, -1)
        self._counts[key] = self._counts.get(key, 0) + by

    def observe(self, metric: Metric, value: float, *labels: str) -> None:
        """One observation of a histogram; negative values (clock skew) count as 0."""
        value = max(0.0, value)
        key = (metric, labels, bisect.bisect_left(metric.buckets, value))
        self._counts[key] = self._counts.get(key, 0) + 1
        self._sums[(metric, labels)] = self._sums.get((metric, labels), 0.0) + value

    def take(self) -> tuple[_Counts, _Sums]:
        """The pending increments; the buffer starts afresh."""
        counts, sums = self._counts, self._sums
        self._counts, self._sums = {}, {}
        return counts, sums

    def restore(self, counts: _Counts, sums: _Sums) -> None:
        """Give back what :meth:`take` returned (a write that failed): nothing is lost."""
        for key, n in counts.items():
            self._counts[key] = self._counts.get(key, 0) + n
        for skey, total in sums.items():
            self._sums[skey] = self._sums.get(skey, 0.0) + total

    def write(self, pipe: _Pipe, keys: Keys) -> None:
        """Add every pending increment to ``pipe`` (not executed here) and start afresh."""
        write_taken(pipe, keys, *self.take())


def write_taken(pipe: _Pipe, keys: Keys, counts: _Counts, sums: _Sums) -> None:
    for (metric, labels, bucket), n in counts.items():
        field = label_field(labels)
        if bucket >= 0:
            field = f"{field}|{_bounds(metric.buckets)[bucket]}"
        pipe.hincrby(keys.metric(metric.name), field, n)
    for (metric, labels), total in sums.items():
        pipe.hincrbyfloat(keys.metric(metric.name), f"{label_field(labels)}|sum", total)


class PeriodicBuffer(MetricsBuffer):
    """A poller's buffer: written at most every ``every`` seconds, in one transaction."""

    __slots__ = ("_flushed_at", "every")

    def __init__(self, every: float = FLUSH_EVERY) -> None:
        super().__init__()
        self.every = every
        self._flushed_at = time.monotonic()

    def due(self) -> bool:
        return bool(self._counts) and time.monotonic() - self._flushed_at >= self.every

    async def flush(self, client: aioredis.Redis, keys: Keys) -> None:
        """Write everything pending in one round trip; on a Redis error keep it and raise."""
        self._flushed_at = time.monotonic()  # before the await: one flush at a time
        if not self._counts:
            return
        counts, sums = self.take()
        pipe = client.pipeline(transaction=True)  # all or nothing: a retry counts once
        write_taken(pipe, keys, counts, sums)
        try:
            await pipe.execute()
        except BaseException:
            self.restore(counts, sums)
            raise


def count(connection: redis.Redis, keys: Keys, metric: Metric, *labels: str) -> None:
    """One increment at once: for rare events (a failed delivery) outside any batch."""
    connection.hincrby(keys.metric(metric.name), label_field(labels), 1)
