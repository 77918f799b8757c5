"""Feed health: healthy, degraded, failing or gone — and a notice when a feed breaks or
recovers.

Role: the pure rules (:func:`classify`, :func:`is_notice`, the rolling items-per-day
counter), the notice job, and the read side used by ``wirewatch status``.

States, from a feed's consecutive failures and its last HTTP status:

- ``healthy``: the last poll succeeded;
- ``degraded``: at least ``poller.degraded_after`` failures in a row (a blip);
- ``failing``: at least ``poller.failing_after`` failures in a row;
- ``gone``: the last answer was HTTP 410; the feed is still polled every
  ``poller.gone_interval`` and comes back by itself if the publisher revives it.

Notices (invariant: one per transition, never one per failure): a feed *breaks* when it
enters ``failing`` or ``gone`` and *recovers* when it is ``healthy`` again after either.
healthy ↔ degraded is logged with each poll but sends nothing. The poller learns of a
transition from :func:`monitor.feed_state.record_poll`, which swaps the stored health
atomically and marks the change (``announce_from``, ``announce_at``) in the same step;
:func:`settle` enqueues the notice and clears the mark in one transaction, and
:func:`sweep_unannounced` (every poller, every 30 s) settles marks older than
:data:`ANNOUNCE_GRACE_S` — left by a poller that died, or met a Redis error, in between.
With ``poller.notify_channel`` set, each notice is an rq job
``workers.jobs.feed_notice`` on the alerts queue whose one argument is
:func:`notice_payload` (small, versioned JSON); without it, only the log line.

Items per day: new items counted in hourly buckets (``new_by_hour``), the last 24 kept.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis
import structlog
from rq import Callback, Queue, Retry
from rq.serializers import JSONSerializer

from monitor.config import Config, FeedConfig
from monitor.feed_state import FeedState, HealthChange
from monitor.keys import Keys, feed_id
from monitor.redis_text import as_text

log = structlog.get_logger()

Health = Literal["healthy", "degraded", "failing", "gone"]
NOTICE_FUNCTION = "workers.jobs.feed_notice"
NOTICE_VERSION = 1
_BROKEN = frozenset({"failing", "gone"})
# A health change not announced this long after it was recorded is left to the sweep.
ANNOUNCE_GRACE_S = 30.0
_HOURS_KEPT = 24


def classify(
    failures: int, *, status: int | None, degraded_after: int, failing_after: int
) -> Health:
    """The health after a poll; ``status`` is that poll's HTTP status, if any."""
    if status == 410:
        return "gone"
    if failures >= failing_after:
        return "failing"
    if failures >= degraded_after:
        return "degraded"
    return "healthy"


def is_notice(previous: str | None, current: str) -> bool:
    """Whether going from ``previous`` (``None``: never polled) to ``current`` is news."""
    if current in _BROKEN:
        return previous != current
    return current == "healthy" and previous in _BROKEN


def count_new(
    buckets: Sequence[tuple[int, int]], now: float, new: int
) -> tuple[tuple[int, int], ...]:
    """``buckets`` with ``new`` items added to the current hour; hours older than a day
    are dropped."""
    hour = int(now // 3600)
    kept = {h: c for h, c in buckets if hour - _HOURS_KEPT < h <= hour}
    if new > 0:
        kept[hour] = kept.get(hour, 0) + new
    return tuple(sorted(kept.items()))


def items_per_day(buckets: Sequence[tuple[int, int]], now: float) -> int:
    """New items seen in the last 24 hours (the current hour included)."""
    hour = int(now // 3600)
    return sum(count for h, count in buckets if hour - _HOURS_KEPT < h <= hour)


def notice_payload(
    feed: FeedConfig, url: str, state: str, previous: str | None, reason: str | None, at: float
) -> dict[str, Any]:
    """The argument of a ``feed_notice`` job."""
    return {
        "v": NOTICE_VERSION,
        "feed": feed.display_name,
        "url": url,
        "state": state,
        "previous": previous,
        "reason": reason,
        "at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
    }


def enqueue_notice(
    connection: redis.Redis,
    keys: Keys,
    payload: Mapping[str, Any],
    channel: str,
    pipeline: redis.client.Pipeline | None = None,
) -> str:
    """Enqueue one notice job (blocking: call it in a thread); returns the job id. With
    ``pipeline``, the job is written there (it goes out with that transaction)."""
    queue = Queue(keys.alerts_queue, connection=connection, serializer=JSONSerializer)
    job = queue.enqueue_call(
        NOTICE_FUNCTION,
        args=(dict(payload) | {"channel": channel},),
        retry=Retry(max=3, interval=[0, 30, 120]),
        on_failure=Callback("workers.jobs.notice_job_failed"),  # a dead letter, not a drop
        failure_ttl=7 * 24 * 3600,
        description=f"feed_notice {payload['feed']!r}: {payload['state']}",
        pipeline=pipeline,
    )
    return str(job.id)


async def announce(
    config: Config,
    keys: Keys,
    rq_client: redis.Redis,
    feed: FeedConfig,
    url: str,
    change: HealthChange | None,
    health: str,
    reason: str | None,
    now: float,
) -> None:
    """Log a transition that is news and hand it to the notify channel. Never raises on
    a Redis error: the change then stays marked in the feed's hash (``announce_from``)
    and a poller's :func:`sweep_unannounced` announces it later."""
    if change is None:
        return
    if is_notice(change.previous, health):
        emit = log.info if health == "healthy" else log.warning
        emit(
            "feed_health_changed",
            feed=feed.display_name,
            url=url,
            state=health,
            previous=change.previous,
            reason=reason,
            notify=config.poller.notify_channel,
        )
    try:
        await asyncio.to_thread(
            settle, rq_client, keys, feed, url, config.poller.notify_channel, now, reason=reason
        )
    except redis.RedisError as exc:
        log.warning("feed_notice_failed", feed=feed.display_name, reason=str(exc))


def settle(
    connection: redis.Redis,
    keys: Keys,
    feed: FeedConfig,
    url: str,
    channel: str | None,
    now: float,
    *,
    reason: str | None = None,
    recorded_before: float | None = None,
) -> dict[str, Any] | None:
    """Announce the feed's waiting health change, once (blocking: call it in a thread).

    The change ``record`` left in the hash (``announce_from`` → the current ``health``)
    is cleared in the same transaction as its notice job is enqueued (WATCH on the hash:
    of two pollers settling one change, one wins and the other finds nothing waiting).
    A change that is not news (healthy ↔ degraded) is cleared with no job; so is a news
    change with no notify channel. ``recorded_before``: only a change recorded before
    then (the sweep leaves fresh ones to the poll that made them). ``reason``: the
    failure the poll saw; else the feed's stored ``last_error``. Returns the notice
    payload enqueued, if any."""
    key = keys.feed(feed.url)
    with connection.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                waiting, at, current, error = pipe.hmget(
                    key, "announce_from", "announce_at", "health", "last_error"
                )
                if waiting is None or current is None:
                    return None
                if recorded_before is not None and float(at or 0) > recorded_before:
                    return None
                previous = as_text(waiting) or None
                state = as_text(current)
                payload = None
                pipe.multi()
                if channel is not None and is_notice(previous, state):
                    why = reason or (as_text(error) if error else None)
                    why = why if state != "healthy" else None
                    payload = notice_payload(feed, url, state, previous, why, now)
                    enqueue_notice(connection, keys, payload, channel, pipeline=pipe)
                pipe.hdel(key, "announce_from", "announce_at")
                pipe.execute()
                return payload
            except redis.WatchError:
                continue  # the hash changed meanwhile (a poll, another settle): look again


def sweep_unannounced(
    connection: redis.Redis,
    keys: Keys,
    feeds: Sequence[FeedConfig],
    channel: str | None,
    now: float,
    grace: float = ANNOUNCE_GRACE_S,
) -> int:
    """Announce every health change left waiting longer than ``grace`` seconds (its
    poller died, or Redis failed, between recording and announcing); returns how many
    notices were enqueued. One pipelined read for all feeds, then :func:`settle` per
    feed with a change waiting."""
    pipe = connection.pipeline(transaction=False)
    for feed in feeds:
        pipe.hmget(keys.feed(feed.url), "announce_at", "current_url")
    sent = 0
    for feed, (at, current_url) in zip(feeds, pipe.execute(), strict=True):
        if at is None or float(at) > now - grace:
            continue
        url = as_text(current_url) if current_url else feed.url
        payload = settle(connection, keys, feed, url, channel, now, recorded_before=now - grace)
        if payload is not None:
            sent += 1
            log.warning(
                "feed_notice_recovered",
                feed=feed.display_name,
                state=payload["state"],
                previous=payload["previous"],
                waited_s=round(now - float(at)),
            )
    return sent


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One row of ``wirewatch status``; times are unix seconds."""

    feed: str
    url: str
    state: str
    last_success: float | None
    failures: int
    last_error: str | None
    last_status: int | None
    items_per_day: int
    next_poll: float | None
    interval: float | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("last_success", "next_poll"):
            value = data[name]
            data[name] = (
                datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
                if value is not None
                else None
            )
        return data


def read_statuses(
    client: redis.Redis, keys: Keys, feeds: Sequence[FeedConfig], now: float | None = None
) -> list[FeedStatus]:
    """The status of ``feeds``, plus any feed the pollers scheduled that is not among
    them (another poller's config), from the state hashes and the shared schedule."""
    now = time.time() if now is None else now
    known = {feed_id(feed.url) for feed in feeds}
    extra = [fid for fid in _decoded(client.zrange(keys.schedule(), 0, -1)) if fid not in known]
    listed = list(feeds)
    if extra:
        with client.pipeline(transaction=False) as pipe:
            for fid in extra:
                pipe.hget(keys.feed_conf(fid), "config")
            for raw in pipe.execute():
                if raw:
                    listed.append(FeedConfig.model_validate_json(raw))
    with client.pipeline(transaction=False) as pipe:
        for feed in listed:
            pipe.hgetall(keys.feed(feed.url))
            pipe.zscore(keys.schedule(), feed_id(feed.url))
        replies = pipe.execute()
    rows = []
    for index, feed in enumerate(listed):
        state = FeedState.from_hash(replies[2 * index])
        due = replies[2 * index + 1]
        rows.append(
            FeedStatus(
                feed=feed.display_name,
                url=state.current_url or feed.url,
                state=state.health or ("unknown" if feed.enabled else "disabled"),
                last_success=state.last_success,
                failures=state.failures,
                last_error=state.last_error,
                last_status=state.last_status,
                items_per_day=items_per_day(state.new_by_hour, now),
                next_poll=float(due) if due is not None and math.isfinite(float(due)) else None,
                interval=state.interval,
            )
        )
    return rows


def _decoded(values: Sequence[Any]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
