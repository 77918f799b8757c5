"""Turn a rule match into an alert, once per (rule, story), and route it to channels.

The alert id is derived from the rule id and the story id, so every worker computes the
same id for the same pair; a follow-up's id from the rule, story and what it tells
(:mod:`workers.followups`), and it threads to the first alert. ``SET alert:{id} NX`` is
the claim; the worker that makes it routes the alert to each of the rule's channels
(:func:`workers.fatigue.route`): send now, hold for a digest (the channel's digest
window, quiet hours, or the rule's rate limit overflowing), or skip (a muted story, a
severity below the channel's minimum).
Every decision is logged and written to the alert history.

If a worker dies after the claim but before routing, the retried batch finds the alert
without its ``queued`` flag and routes it then; every routing step is idempotent
(deterministic job ids, digest buffers keyed by alert id, rate windows keyed by alert id).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import redis
import structlog
from rq import Retry
from rq.job import Job

from monitor.config import RuleConfig
from monitor.keys import Keys, digest
from workers import digest as digests
from workers.dispatch import enqueue_delivery, enqueue_on_alerts_queue, history, job_id
from workers.fatigue import route
from workers.model import Alert
from workers.ratelimit import over_rate
from workers.resources import Resources

log = structlog.get_logger()

FLUSH_JOB = "workers.jobs.flush_digest"


def alert_id(rule_id: str, story_id: str) -> str:
    return digest(f"{rule_id}\x00{story_id}", 32)


def raise_alert(connection: redis.Redis, res: Resources, alert: Alert, rule: RuleConfig) -> bool:
    """Record the alert and route it. False when it existed (and was routed) already."""
    keys = res.keys
    key = keys.alert(alert.id)
    ttl = int(res.config.workers.alert_days * 86400)
    record = json.dumps(alert.to_json(), separators=(",", ":"))
    created = bool(connection.set(key, record, nx=True, ex=ttl))
    routed_flag = f"{key}:queued"
    if not created and connection.exists(routed_flag):
        log.info("alert_duplicate", alert_id=alert.id, rule=alert.rule_id, story=alert.story)
        return False
    if created:
        history(
            connection,
            res,
            "raised",
            alert.id,
            rule=alert.rule_id,
            story=alert.story,
            severity=alert.severity,
            title=alert.item.title,
            url=alert.item.url,
        )
        log.info(
            "alert_raised",
            alert_id=alert.id,
            rule=alert.rule_id,
            story=alert.story,
            title=alert.item.title,
            channels=rule.channels,
        )
    _route(connection, res, alert, rule)
    connection.set(routed_flag, "1", ex=ttl)
    return created


def _route(connection: redis.Redis, res: Resources, alert: Alert, rule: RuleConfig) -> None:
    keys = res.keys
    now = datetime.now(UTC)
    # A story is muted by its id; muting an item's key mutes the story it is in too.
    muted = bool(connection.exists(keys.muted(alert.story), keys.muted(alert.item.key)))
    over: bool | None = None  # asked once, and only if some channel would send now
    for name in rule.channels:
        channel = res.config.channels[name]
        decision = route(rule, channel, now=now, over_rate=False, muted=muted)
        if decision.action == "send" and rule.max_rate is not None:
            if over is None:
                over = over_rate(
                    connection, keys, rule.id, rule.max_rate, alert.id, now.timestamp()
                )
            if over:
                decision = route(rule, channel, now=now, over_rate=True, muted=muted)
        if decision.action == "send":
            if connection.exists(keys.delivered(alert.id, name)):
                continue
            if not Job.exists(job_id(keys, alert.id, name, 1), connection=connection):
                enqueue_delivery(connection, keys, alert.id, name)
            continue
        history(connection, res, decision.action, alert.id, channel=name, reason=decision.reason)
        log.info(
            "alert_held" if decision.action == "digest" else "alert_skipped",
            alert_id=alert.id,
            rule=alert.rule_id,
            channel=name,
            reason=decision.reason,
        )
        if decision.action == "digest" and decision.flush_at is not None:
            hold_for_digest(connection, keys, alert.id, name, decision.flush_at)


def hold_for_digest(
    connection: redis.Redis, keys: Keys, alert: str, channel: str, flush_at: datetime
) -> None:
    """Buffer the alert for the channel's next digest; schedule the flush if none is."""
    if digests.add(connection, keys, channel, alert, flush_at.timestamp()):
        schedule_flush(connection, keys, channel, flush_at)


def schedule_flush(
    connection: redis.Redis, keys: Keys, channel: str, at: datetime, attempt: int = 1
) -> None:
    """Run ``flush_digest(channel, attempt)`` at ``at`` (rq's scheduler runs in workers)."""
    enqueue_on_alerts_queue(
        connection,
        keys,
        FLUSH_JOB,
        channel,
        attempt,
        delay_s=at.timestamp() - time.time(),
        retry=Retry(max=2),  # a crashed flush runs again; its batch waits in Redis
        job_timeout=120,
        result_ttl=86400,
        failure_ttl=30 * 86400,
        description=f"send the digest of channel {channel} (attempt {attempt})",
    )
