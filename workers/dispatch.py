"""Delivery of one alert to one channel: send, retry on our schedule, or bury.

A delivery is an rq job on the alerts queue, ``deliver(alert_id, channel, attempt)``.
Failures the channel reports (:class:`DeliveryError`) are handled here, not by rq:
transient ones are re-enqueued with :func:`workers.retry_policy.retry_delay` (which
obeys ``Retry-After``) through rq's scheduler; permanent ones, and the last transient
one, go to the dead letters with every attempt's error.

rq's own ``Retry`` on each job is only the safety net for a worker that dies mid-job (or
a bug): the job is run again, and when that too is exhausted, the on-failure callback
buries it. Either way, nothing is dropped silently.

Idempotency: ``delivered:{alert}:{channel}`` is checked before and set after a send, and
``sending:{alert}:{channel}`` keeps two copies of a job from sending at the same moment.
A crash between a send and its mark may repeat a send; the receiver drops it by the
``webhook-id`` / ``Message-ID``, which is the alert id.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import redis
import structlog
from rq import Callback, Queue, Retry
from rq.serializers import JSONSerializer

from monitor.config_channels import RetrySettings
from monitor.keys import Keys, digest
from workers import deadletter
from workers.delivery import DeliveryError
from workers.delivery import deliver as deliver_to_channel
from workers.model import Alert
from workers.resources import Resources
from workers.retry_policy import retry_delay, should_retry

log = structlog.get_logger()

DELIVER_JOB = "workers.jobs.deliver"
ON_FAILURE = "workers.jobs.delivery_job_failed"
JOB_TIMEOUT_S = 120
# The safety net for a crashed worker: run the same attempt again, twice at most.
CRASH_RETRY = Retry(max=2, interval=[5, 15])


def job_id(keys: Keys, target: str, channel: str, attempt: int, tag: str = "") -> str:
    """Deterministic: the same attempt of the same delivery is one rq job.

    rq job ids live in rq's global namespace, so they carry a digest of our prefix.
    """
    suffix = f"-{tag}" if tag else ""
    return f"ww{digest(keys.prefix, 8)}-d-{target}-{channel}-{attempt}{suffix}"


def enqueue_delivery(
    connection: redis.Redis,
    keys: Keys,
    alert_id: str,
    channel: str,
    *,
    attempt: int = 1,
    delay_s: float = 0.0,
    tag: str = "",
) -> str:
    queue = Queue(keys.alerts_queue, connection=connection, serializer=JSONSerializer)
    options: dict[str, Any] = {
        "job_id": job_id(keys, alert_id, channel, attempt, tag),
        "retry": CRASH_RETRY,
        "on_failure": Callback(ON_FAILURE),
        "job_timeout": JOB_TIMEOUT_S,
        "result_ttl": 86400,
        "failure_ttl": 30 * 86400,
        "description": f"deliver alert {alert_id} to {channel} (attempt {attempt})",
    }
    if delay_s >= 1:  # rq's scheduler works in whole seconds; sooner is now
        queue.enqueue_in(
            timedelta(seconds=delay_s), DELIVER_JOB, alert_id, channel, attempt, **options
        )
    else:
        queue.enqueue(DELIVER_JOB, alert_id, channel, attempt, **options)
    return str(options["job_id"])


def replay_tag() -> str:
    return f"r{uuid.uuid4().hex[:8]}"


def policy_for(res: Resources, channel: str) -> RetrySettings:
    configured = res.config.channels.get(channel)
    if configured is not None and configured.retry is not None:
        return configured.retry
    return res.config.delivery.retry


def deliver_alert(
    connection: redis.Redis, res: Resources, alert_id: str, channel_name: str, attempt: int
) -> str:
    """Run one attempt. Returns what happened: delivered, retrying, dead, or a skip reason."""
    keys = res.keys
    if connection.exists(keys.delivered(alert_id, channel_name)):
        log.info("alert_already_delivered")
        return "already delivered"
    raw = connection.get(keys.alert(alert_id))
    if raw is None:
        log.error("alert_missing", reason="the alert record expired or was deleted")
        return "alert missing"
    alert = Alert.from_json(json.loads(raw))
    channel = res.config.channels.get(channel_name)
    if channel is None:
        reason = f"channel {channel_name!r} is not in the config any more"
        _bury(connection, res, alert, channel_name, reason)
        return "dead"
    lock = keys.sending(alert_id, channel_name)
    if not connection.set(lock, attempt, nx=True, ex=JOB_TIMEOUT_S + 30):
        log.info("alert_delivery_in_progress", attempt=attempt)
        return "in progress elsewhere"
    try:
        deliver_to_channel(alert, channel_name, channel)
    except DeliveryError as exc:
        return _failed(connection, res, alert, channel_name, attempt, exc)
    finally:
        connection.delete(lock)
    ttl = int(res.config.workers.alert_days * 86400)
    connection.set(keys.delivered(alert_id, channel_name), str(time.time()), ex=ttl)
    history(connection, res, "delivered", alert_id, channel=channel_name, attempt=attempt)
    log.info("alert_delivered", rule=alert.rule_id, title=alert.item.title, attempt=attempt)
    return "delivered"


def _failed(
    connection: redis.Redis,
    res: Resources,
    alert: Alert,
    channel: str,
    attempt: int,
    exc: DeliveryError,
) -> str:
    keys = res.keys
    ttl = int(res.config.workers.alert_days * 86400)
    failure = deadletter.Attempt(attempt, time.time(), exc.reason, exc.status, exc.transient)
    deadletter.record_attempt(connection, keys, alert.id, channel, failure, ttl)
    policy = policy_for(res, channel)
    if should_retry(policy, attempt, exc.transient):
        delay = retry_delay(policy, attempt, exc.retry_after)
        enqueue_delivery(connection, keys, alert.id, channel, attempt=attempt + 1, delay_s=delay)
        log.warning(
            "alert_delivery_failed",
            reason=exc.reason,
            status=exc.status,
            attempt=attempt,
            retry_in_s=round(delay, 1),
            final=False,
        )
        return "retrying"
    why = exc.reason if not exc.transient else f"{exc.reason} (gave up after {attempt} tries)"
    _bury(connection, res, alert, channel, why)
    return "dead"


def _bury(connection: redis.Redis, res: Resources, alert: Alert, channel: str, reason: str) -> None:
    letter = deadletter.DeadLetter(
        target=alert.id,
        channel=channel,
        kind="alert",
        reason=reason,
        buried_at=time.time(),
        rule=alert.rule_id,
        title=alert.item.title,
        attempts=tuple(deadletter.attempts_of(connection, res.keys, alert.id, channel)),
    )
    deadletter.bury(connection, res.keys, letter)
    history(connection, res, "dead", alert.id, channel=channel, reason=reason)
    log.error(
        "alert_dead",
        rule=alert.rule_id,
        title=alert.item.title,
        reason=reason,
        attempts=len(letter.attempts),
        final=True,
    )


def history(
    connection: redis.Redis, res: Resources, event: str, alert_id: str, **fields: str | int
) -> None:
    """Append to the capped alert history stream (read by ``wirewatch alerts list``)."""
    entry: dict[str, str | int] = {"event": event, "id": alert_id, **fields}
    connection.xadd(
        res.keys.alert_history(),
        entry,  # type: ignore[arg-type]
        maxlen=res.config.delivery.history_max,
        approximate=True,
    )
