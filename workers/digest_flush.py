"""Send a channel's held alerts as one digest: the ``flush_digest`` job.

The held alerts stay in the channel's buffer (:mod:`workers.digest`) until the digest
was accepted, so a crash or a failed send loses none; the digest id is derived from
the alert ids, so a repeated send carries the same id and receivers drop it. Failures
follow the same retry policy as single alerts; a digest that gives up is buried with
the ids of the alerts it held, and ``wirewatch alerts replay`` puts them back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis
import structlog

from monitor.metrics import DELIVERIES, count
from workers import digest as digests
from workers.alerts import schedule_flush
from workers.delivery import DeliveryError, deliver_digest
from workers.dispatch import Target, after_failure, bury, history
from workers.model import Alert
from workers.resources import Resources

log = structlog.get_logger()

NEXT_FLUSH_S = 60.0  # alerts that arrived during a flush: the next digest after this


def flush(connection: redis.Redis, res: Resources, channel_name: str, attempt: int) -> str:
    keys = res.keys
    channel = res.config.channels.get(channel_name)
    batch = digests.take(connection, keys, channel_name)
    if not batch.alert_ids:
        digests.done(connection, keys, channel_name, [])
        return "empty"
    alerts = [_load(connection, res, alert_id) for alert_id in batch.alert_ids]
    present = [alert for alert in alerts if alert is not None]
    muted = [a for a in present if connection.exists(keys.muted(a.story))]
    for alert in muted:  # muted after it was held: not sent, and the history says so
        history(connection, res, "skip", alert.id, channel=channel_name, reason="muted story")
    present = [alert for alert in present if alert not in muted]
    target = Target(
        batch.digest_id,
        "digest",
        channel_name,
        title=f"digest of {len(batch.alert_ids)} alerts",
        alert_ids=tuple(batch.alert_ids),
    )
    if channel is None:
        bury(connection, res, target, "channel removed from the config")
        _done(connection, res, channel_name, batch.alert_ids)
        return "dead"
    if not present:  # all muted, or their records expired: nothing to send
        log.info("digest_nothing_to_send", held=len(batch.alert_ids), muted=len(muted))
        _done(connection, res, channel_name, batch.alert_ids)
        return "nothing to send"
    try:
        deliver_digest(present, batch.digest_id, channel_name, channel, http=res.http)
    except DeliveryError as exc:

        def retry(next_attempt: int, delay: float) -> None:
            _enqueue_flush(connection, res, channel_name, next_attempt, delay)

        outcome = after_failure(connection, res, target, attempt, exc, retry)
        if outcome == "dead":  # its alerts now live in the dead letter; free the buffer
            _done(connection, res, channel_name, batch.alert_ids)
        return outcome
    ttl = int(res.config.workers.alert_days * 86400)
    for alert in present:
        connection.set(keys.delivered(alert.id, channel_name), str(time.time()), ex=ttl)
        history(
            connection, res, "delivered", alert.id, channel=channel_name, digest=batch.digest_id
        )
    count(connection, keys, DELIVERIES, channel_name, "digest", "sent")
    log.info("digest_delivered", digest_id=batch.digest_id, alerts=len(present), attempt=attempt)
    _done(connection, res, channel_name, batch.alert_ids)
    return "delivered"


def _done(connection: redis.Redis, res: Resources, channel: str, alert_ids: Sequence[str]) -> None:
    if digests.done(connection, res.keys, channel, list(alert_ids)):
        configured = res.config.channels.get(channel)
        wait = configured.digest if configured is not None and configured.digest else NEXT_FLUSH_S
        at = time.time() + wait
        if digests.schedule(connection, res.keys, channel, at):  # exactly one scheduler
            _enqueue_flush(connection, res, channel, 1, wait)


def _enqueue_flush(
    connection: redis.Redis, res: Resources, channel: str, attempt: int, delay_s: float
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=delay_s)
    schedule_flush(connection, res.keys, channel, at, attempt)


def _load(connection: redis.Redis, res: Resources, alert_id: str) -> Alert | None:
    raw = connection.get(res.keys.alert(alert_id))
    return Alert.from_json(json.loads(raw)) if raw is not None else None


def sweep(connection: redis.Redis, res: Resources) -> int:
    """Schedule a flush for every channel whose held alerts have none (a worker died
    between buffering an alert and scheduling its flush). Run by every worker's
    maintenance pass; returns how many flushes it scheduled."""
    scheduled = 0
    for name in res.config.channels:
        if digests.scheduled(connection, res.keys, name) is None and digests.schedule(
            connection, res.keys, name, time.time()
        ):
            _enqueue_flush(connection, res, name, 1, 0)
            log.warning("digest_flush_recovered", channel=name)
            scheduled += 1
    return scheduled
