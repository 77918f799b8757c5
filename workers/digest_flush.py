"""Send a channel's held alerts as one digest: the ``flush_digest`` job.

The held alerts stay in the channel's buffer (:mod:`workers.digest`) until the digest
was accepted, so a crash or a failed send loses none; the digest id is derived from
the alert ids, so a repeated send carries the same id and receivers drop it. Failures
follow the same retry policy as single alerts; a digest that gives up is buried with
the ids of the alerts it held, and ``wirewatch alerts replay`` puts them back.

A flush sends only the alerts that are due: one held by its rule's quiet hours stays in
the buffer until the window ends, and the next flush is scheduled for the later of the
earliest such end and the channel's usual wait (its ``digest`` window, else
:data:`NEXT_FLUSH_S`). A flush that finds nothing due sends nothing and comes back when
the first alert is. A job whose token the flush flag no longer holds (an earlier flush
was scheduled since, and took over) does nothing: ``"stale"``.
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
NOT_DUE_RETRY_S = 1.0  # nothing due yet (rq ran the job a little early): back this soon


def flush(
    connection: redis.Redis,
    res: Resources,
    channel_name: str,
    attempt: int,
    token: str | None = None,
) -> str:
    keys = res.keys
    channel = res.config.channels.get(channel_name)
    batch = digests.take(connection, keys, channel_name, token=token)
    if batch is None:  # another flush took the flag over: it sends what is due
        log.info("digest_flush_stale", token=token)
        return "stale"
    if not batch.alert_ids:  # nothing buffered, or all held for later (quiet hours)
        left = _done(connection, res, channel_name, (), token, sent=False)
        return "not due" if left else "empty"
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
        _done(connection, res, channel_name, batch.alert_ids, token)
        return "dead"
    if not present:  # all muted, or their records expired: nothing to send
        log.info("digest_nothing_to_send", held=len(batch.alert_ids), muted=len(muted))
        _done(connection, res, channel_name, batch.alert_ids, token)
        return "nothing to send"
    pipe = connection.pipeline(transaction=False)  # one round trip, not one per alert
    for alert in present:
        pipe.exists(keys.delivered(alert.id, channel_name))
    sent_before = [alert for alert, found in zip(present, pipe.execute(), strict=True) if found]
    if sent_before:  # an alert can be held again after it went out (a batch re-run)
        present = [alert for alert in present if alert not in sent_before]
        log.info("digest_skipped_delivered", alerts=[a.id for a in sent_before])
        if not present:
            _done(connection, res, channel_name, batch.alert_ids, token)
            return "nothing to send"
    try:
        try:
            deliver_digest(present, batch.digest_id, channel_name, channel, http=res.http)
        except DeliveryError:
            raise
        except Exception as bug:  # not a delivery failure: a bug, or a library's surprise
            # Permanent, so the batch becomes a dead letter instead of wedging the
            # channel (every later flush would take the same batch and fail the same
            # way). The reason (shown by the API and `alerts dead`) names the type only;
            # the worker's log keeps the traceback for whoever fixes it.
            log.exception("digest_flush_failed", error=type(bug).__name__)
            reason = f"digest could not be sent ({type(bug).__name__}; see the worker's log)"
            raise DeliveryError(channel.type, reason, False) from bug
    except DeliveryError as exc:

        def retry(next_attempt: int, delay: float) -> None:
            _retry_flush(connection, res, channel_name, next_attempt, delay, token)

        outcome = after_failure(connection, res, target, attempt, exc, retry)
        if outcome == "dead":  # its alerts now live in the dead letter; free the buffer
            _done(connection, res, channel_name, batch.alert_ids, token)
        return outcome
    ttl = int(res.config.workers.alert_days * 86400)
    for alert in present:
        connection.set(keys.delivered(alert.id, channel_name), str(time.time()), ex=ttl)
        history(
            connection, res, "delivered", alert.id, channel=channel_name, digest=batch.digest_id
        )
    count(connection, keys, DELIVERIES, channel_name, "digest", "sent")
    log.info("digest_delivered", digest_id=batch.digest_id, alerts=len(present), attempt=attempt)
    _done(connection, res, channel_name, batch.alert_ids, token)
    return "delivered"


def _done(
    connection: redis.Redis,
    res: Resources,
    channel: str,
    alert_ids: Sequence[str],
    token: str | None,
    *,
    sent: bool = True,
) -> int:
    """Free the batch and schedule the flush of what remains; returns how many remain.

    After a batch (``sent``), the next digest waits the channel's window, and at least
    until the first remaining alert is due; after finding nothing due, just the latter.
    """
    left = digests.done(connection, res.keys, channel, list(alert_ids), token=token)
    if left.held:
        wait = NOT_DUE_RETRY_S
        if sent:
            configured = res.config.channels.get(channel)
            wait = (
                configured.digest if configured is not None and configured.digest else NEXT_FLUSH_S
            )
        delay = max(left.due_in(), wait)
        new = digests.schedule(connection, res.keys, channel, time.time() + delay)
        if new is not None:  # exactly one scheduler: this flush, or a racing add
            _enqueue_flush(connection, res, channel, 1, delay, new)
    return left.held


def _retry_flush(
    connection: redis.Redis,
    res: Resources,
    channel: str,
    attempt: int,
    delay_s: float,
    token: str | None,
) -> None:
    """Run the failed flush again with the same token, keeping its flag until then."""
    if token is not None and not digests.retain(
        connection, res.keys, channel, token, time.time() + delay_s
    ):
        log.info("digest_retry_superseded", attempt=attempt)  # an earlier flush resends it
        return
    _enqueue_flush(connection, res, channel, attempt, delay_s, token)


def _enqueue_flush(
    connection: redis.Redis,
    res: Resources,
    channel: str,
    attempt: int,
    delay_s: float,
    token: str | None,
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=delay_s)
    schedule_flush(connection, res.keys, channel, at, attempt, token)


def _load(connection: redis.Redis, res: Resources, alert_id: str) -> Alert | None:
    raw = connection.get(res.keys.alert(alert_id))
    return Alert.from_json(json.loads(raw)) if raw is not None else None


def sweep(connection: redis.Redis, res: Resources) -> int:
    """Schedule a flush for every channel whose held alerts have none (a worker died
    between buffering an alert and scheduling its flush). Run by every worker's
    maintenance pass; returns how many flushes it scheduled. A flush it schedules for
    alerts held by quiet hours finds nothing due and comes back when the window ends."""
    scheduled = 0
    for name in res.config.channels:
        if digests.scheduled(connection, res.keys, name) is not None:
            continue
        token = digests.schedule(connection, res.keys, name, time.time(), only_if_absent=True)
        if token is not None:
            _enqueue_flush(connection, res, name, 1, 0, token)
            log.warning("digest_flush_recovered", channel=name)
            scheduled += 1
    return scheduled
