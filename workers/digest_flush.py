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

from workers import deadletter
from workers import digest as digests
from workers.alerts import schedule_flush
from workers.delivery import DeliveryError, deliver_digest
from workers.dispatch import history, policy_for
from workers.model import Alert
from workers.resources import Resources
from workers.retry_policy import retry_delay, should_retry

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
    if channel is None or not present:
        reason = "channel removed from the config" if channel is None else "alerts expired"
        _bury(connection, res, channel_name, batch.digest_id, batch.alert_ids, reason, [])
        _done(connection, res, channel_name, batch.alert_ids)
        return "dead"
    try:
        deliver_digest(present, batch.digest_id, channel_name, channel)
    except DeliveryError as exc:
        failure = deadletter.Attempt(attempt, time.time(), exc.reason, exc.status, exc.transient)
        ttl = int(res.config.workers.alert_days * 86400)
        deadletter.record_attempt(connection, keys, batch.digest_id, channel_name, failure, ttl)
        policy = policy_for(res, channel_name)
        if should_retry(policy, attempt, exc.transient):
            delay = retry_delay(policy, attempt, exc.retry_after)
            _enqueue_flush(connection, res, channel_name, attempt + 1, delay)
            log.warning(
                "digest_delivery_failed",
                reason=exc.reason,
                attempt=attempt,
                retry_in_s=round(delay, 1),
                final=False,
            )
            return "retrying"
        attempts = deadletter.attempts_of(connection, keys, batch.digest_id, channel_name)
        _bury(connection, res, channel_name, batch.digest_id, batch.alert_ids, exc.reason, attempts)
        _done(connection, res, channel_name, batch.alert_ids)
        return "dead"
    ttl = int(res.config.workers.alert_days * 86400)
    for alert in present:
        connection.set(keys.delivered(alert.id, channel_name), str(time.time()), ex=ttl)
        history(
            connection, res, "delivered", alert.id, channel=channel_name, digest=batch.digest_id
        )
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


def _bury(
    connection: redis.Redis,
    res: Resources,
    channel: str,
    digest_id: str,
    alert_ids: Sequence[str],
    reason: str,
    attempts: list[deadletter.Attempt],
) -> None:
    letter = deadletter.DeadLetter(
        target=digest_id,
        channel=channel,
        kind="digest",
        reason=reason,
        buried_at=time.time(),
        title=f"digest of {len(alert_ids)} alerts",
        alert_ids=tuple(alert_ids),
        attempts=tuple(attempts),
    )
    deadletter.bury(connection, res.keys, letter)
    for alert_id in alert_ids:
        history(connection, res, "dead", alert_id, channel=channel, reason=reason)
    log.error("digest_dead", digest_id=digest_id, alerts=len(alert_ids), reason=reason, final=True)
