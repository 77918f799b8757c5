"""rq job entry points, referenced by dotted path from the queues.

* ``process_batch(payload)``: a batch of new items from a poller → exact dedupe →
  entities → stories → rules → alerts (one per rule and story) and follow-ups, with one
  summary log line (:mod:`workers.batch`).
* ``deliver(alert_id, channel, attempt)``: one attempt to send one alert to one channel
  (:mod:`workers.dispatch` retries and buries).
* ``flush_digest(channel, attempt, token)``: send a channel's due held alerts as one
  digest (:mod:`workers.digest_flush`); a stale token (another flush took over) does
  nothing.
* ``batch_job_failed``: rq's on-failure callback of a batch that failed for good: its
  dedupe claims are released (the job stays in rq's failed registry for the operator).
* ``feed_notice(payload, attempt)``: a feed broke or recovered; tell the operator's
  channel (``poller.notify_channel``), with the same retries and dead letters.
* ``delivery_job_failed``: rq's on-failure callback — a delivery job that crashed for
  good (not a channel error: those are handled in the job) is buried, not dropped.

Every job is idempotent, because rq runs a job again after a crash or a retry.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import redis
import structlog
from rq import get_current_job
from rq.job import Job

from monitor.items import Item, items_from_payload
from monitor.metrics import DELIVERIES, count
from workers import resources
from workers.batch import process_items
from workers.dedupe import release
from workers.delivery import DeliveryError
from workers.delivery.notice import FeedNotice, deliver_notice
from workers.digest_flush import flush
from workers.dispatch import Target, after_failure, bury, deliver_alert, enqueue_notice

log = structlog.get_logger()


FailureCallback = Callable[
    [Job, redis.Redis, type[BaseException] | None, BaseException | None, TracebackType | None],
    None,
]


def _on_final_failure(handle: Callable[[Job, redis.Redis, str], None]) -> FailureCallback:
    """An rq on-failure callback that acts only when rq will not run the job again.

    rq calls on-failure callbacks on every failure (and for jobs of dead workers);
    ``handle`` gets the job, the connection and a one-line reason.
    """

    @functools.wraps(handle)
    def callback(
        job: Job,
        connection: redis.Redis,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if job.retries_left:  # rq will run it again
            return
        handle(job, connection, f"{kind.__name__ if kind else 'abandoned'}: {value}")

    return callback


def _job_id() -> str:
    job = get_current_job()
    return job.id if job is not None else ""


def _connection() -> redis.Redis:
    job = get_current_job()
    if job is None:
        raise RuntimeError("this function runs as an rq job")
    connection: redis.Redis = job.connection
    return connection


class BatchIncomplete(RuntimeError):
    """Some items of a batch failed; rq retries the batch (the rest is idempotent)."""


def process_batch(payload: dict[str, Any]) -> dict[str, int]:
    items = items_from_payload(payload)
    feeds = sorted({item.feed_name or item.feed_url for item in items})
    with structlog.contextvars.bound_contextvars(job_id=_job_id(), feed=", ".join(feeds)):
        return _process_batch(items)


def _process_batch(items: list[Item]) -> dict[str, int]:
    started = time.perf_counter()
    res = resources.current()
    counts, failed = process_items(_connection(), res, items)
    summary = {"items": len(items), **counts, "failed": len(failed)}
    log.info(
        "batch_processed",
        **summary,
        ner=res.extractor.name,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    if failed:
        reasons = "; ".join(f"{item.key}: {reason}" for item, reason in failed[:5])
        raise BatchIncomplete(f"{len(failed)} of {len(items)} items failed: {reasons}")
    return summary


@_on_final_failure
def batch_job_failed(job: Job, connection: redis.Redis, reason: str) -> None:
    """A batch failed for good: give its claims back.

    The job itself stays in rq's failed registry (with its traceback) for the operator.
    """
    res = resources.current()
    items = items_from_payload(job.args[0])
    release(connection, res.keys, items)
    log.error(
        "batch_failed",
        job_id=job.id,
        items=len(items),
        reason=reason,
        final=True,
    )


def deliver(alert_key: str, channel: str, attempt: int = 1) -> str:
    context = {"job_id": _job_id(), "alert_id": alert_key, "channel": channel, "attempt": attempt}
    with structlog.contextvars.bound_contextvars(**context):
        return deliver_alert(_connection(), resources.current(), alert_key, channel, attempt)


def flush_digest(channel: str, attempt: int = 1, token: str | None = None) -> str:
    """``token``: the flush flag this job owns; None (a job queued by an older version)
    flushes regardless."""
    with structlog.contextvars.bound_contextvars(job_id=_job_id(), channel=channel):
        return flush(_connection(), resources.current(), channel, attempt, token)


@_on_final_failure
def delivery_job_failed(job: Job, connection: redis.Redis, reason: str) -> None:
    """A delivery whose job itself failed for the last time: a dead letter."""
    reason = f"delivery job failed: {reason}"
    alert, channel = str(job.args[0]), str(job.args[1])
    bury(connection, resources.current(), Target(alert, "alert", channel), reason)


@_on_final_failure
def notice_job_failed(job: Job, connection: redis.Redis, reason: str) -> None:
    """A notice job that crashed for good: a dead letter."""
    payload = dict(job.args[0])
    notice = FeedNotice.from_json(payload)
    channel = str(payload.get("channel") or resources.current().config.poller.notify_channel)
    reason = f"notice job failed: {reason}"
    target = Target(notice.id, "notice", channel, title=notice.title, payload=payload)
    bury(connection, resources.current(), target, reason)


def feed_notice(payload: dict[str, Any], attempt: int = 1) -> str:
    """Tell ``poller.notify_channel`` that a feed broke or recovered (once per change)."""
    res = resources.current()
    connection = _connection()
    notice = FeedNotice.from_json(payload)
    name = payload.get("channel") or res.config.poller.notify_channel
    with structlog.contextvars.bound_contextvars(job_id=_job_id(), feed=notice.feed):
        channel = res.config.channels.get(name) if name else None
        if channel is None or name is None:
            log.info("feed_notice_not_sent", state=notice.state, reason="no notify_channel")
            return "no channel"
        delivered = res.keys.delivered(notice.id, name)
        if connection.exists(delivered):
            return "already delivered"
        try:
            deliver_notice(notice, name, channel)
        except DeliveryError as exc:

            def retry(next_attempt: int, delay: float) -> None:
                enqueue_notice(connection, res.keys, payload, next_attempt, delay)

            target = Target(notice.id, "notice", name, title=notice.title, payload=payload)
            return after_failure(connection, res, target, attempt, exc, retry)
        ttl = int(res.config.workers.alert_days * 86400)
        connection.set(delivered, str(time.time()), ex=ttl)
        count(connection, res.keys, DELIVERIES, name, "notice", "sent")
        log.info("feed_notice_delivered", channel=name, state=notice.state)
        return "delivered"
