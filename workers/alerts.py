"""Turn a rule match into an alert, exactly once per (rule, item), and queue its deliveries.

The alert's id is derived from the rule id and the item key, so every worker computes
the same id for the same pair. ``SET alert:{id} NX`` is the claim: the worker that
creates the key enqueues one delivery job per channel. Deliveries are rq jobs on the
alerts queue with deterministic job ids and a ``Retry`` schedule; the delivery job
itself checks ``delivered:{id}:{channel}`` before sending, so a job that runs twice
sends once (and the ``webhook-id`` / Message-ID let receivers drop any repeat).

If a worker dies after the claim but before enqueueing, the retried batch finds the
alert record without its ``queued`` flag and enqueues the missing deliveries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis
import structlog
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.config import Config
from monitor.keys import Keys, digest
from workers.model import Alert

log = structlog.get_logger()

DELIVER_JOB = "workers.jobs.deliver"


def alert_id(rule_id: str, item_key: str) -> str:
    return digest(f"{rule_id}\x00{item_key}", 32)


def delivery_job_id(keys: Keys, alert: str, channel: str) -> str:
    """rq job ids live in rq's global namespace: qualify them with our key prefix."""
    return f"ww{digest(keys.prefix, 8)}-deliver-{alert}-{channel}"


def raise_alert(
    connection: redis.Redis, config: Config, keys: Keys, alert: Alert, channels: Sequence[str]
) -> bool:
    """Record the alert and enqueue its deliveries. False when it existed already."""
    key = keys.alert(alert.id)
    ttl = int(config.workers.alert_days * 86400)
    record = json.dumps(alert.to_json(), separators=(",", ":"))
    created = bool(connection.set(key, record, nx=True, ex=ttl))
    queued_flag = f"{key}:queued"
    if not created and connection.exists(queued_flag):
        log.info("alert_duplicate", alert_id=alert.id, rule=alert.rule_id, item=alert.item.key)
        return False
    _enqueue_deliveries(connection, config, keys, alert.id, channels)
    connection.set(queued_flag, "1", ex=ttl)
    if created:
        connection.xadd(
            keys.alert_history(),
            {"id": alert.id, "rule": alert.rule_id, "title": alert.item.title},
            maxlen=10_000,
            approximate=True,
        )
        log.info(
            "alert_raised",
            alert_id=alert.id,
            rule=alert.rule_id,
            item=alert.item.key,
            title=alert.item.title,
            channels=list(channels),
        )
    return created


def _enqueue_deliveries(
    connection: redis.Redis, config: Config, keys: Keys, alert: str, channels: Sequence[str]
) -> None:
    queue = Queue(keys.alerts_queue, connection=connection, serializer=JSONSerializer)
    intervals = config.workers.delivery_retries
    for channel in channels:
        if connection.exists(keys.delivered(alert, channel)):
            continue
        job_id = delivery_job_id(keys, alert, channel)
        if Job.exists(job_id, connection=connection):
            continue
        queue.enqueue(
            DELIVER_JOB,
            alert,
            channel,
            job_id=job_id,
            retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
            job_timeout=120,
            result_ttl=86400,
            failure_ttl=30 * 86400,
            description=f"deliver alert {alert} to {channel}",
        )
