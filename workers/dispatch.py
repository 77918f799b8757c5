"""Delivery of one alert to one channel: send, retry on our schedule, or bury.

A delivery is an rq job on the alerts queue, ``deliver(alert_id, channel, attempt)``.
(The first attempt is usually made by the batch job that raised the alert,
:mod:`workers.outbox`; a job runs when that one was slow or failed, for its retries,
and for channels not sent inline.)
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

Metrics (:mod:`monitor.metrics`): ``wirewatch_deliveries_total`` by channel, kind and
result (sent, retried, dead) and publication → delivery; a sent alert's go in the same
pipeline as its history entry, so they cost no round trip of their own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
import structlog
from rq import Callback, Queue, Retry, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.config_channels import RetrySettings
from monitor.keys import Keys, digest
from monitor.metrics import DELIVERIES, PUBLISH_TO_DELIVERY, MetricsBuffer, count
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
# The safety net for a crashed worker: run the same attempt again, twice at most, at
# once (a scheduled retry would wait for rq's scheduler, which may have died with it).
CRASH_RETRY = Retry(max=2)


def job_id(keys: Keys, target: str, channel: str, attempt: int, tag: str = "") -> str:
    """Deterministic: the same attempt of the same delivery is one rq job.

    rq job ids live in rq's global namespace, so they carry a digest of our prefix.
    """
    suffix = f"-{tag}" if tag else ""
    return f"ww{digest(keys.prefix, 8)}-d-{target}-{channel}-{attempt}{suffix}"


def enqueue_on_alerts_queue(
    connection: redis.Redis,
    keys: Keys,
    func: str,
    *args: Any,
    delay_s: float = 0.0,
    **options: Any,
) -> None:
    """Enqueue ``func(*args)`` on the alerts queue, now or in ``delay_s`` seconds.

    rq's scheduler works in whole seconds and may itself be restarting after a crash,
    so anything due within half a second is enqueued at once rather than scheduled; a
    delay a hair under a second (a retry's 1 s, computed from a clock that moved on) is
    scheduled for the full second, not run at once.
    """
    queue = Queue(keys.alerts_queue, connection=connection, serializer=JSONSerializer)
    if delay_s >= 0.5:
        queue.enqueue_in(timedelta(seconds=max(1.0, delay_s)), func, *args, **options)
    else:
        queue.enqueue(func, *args, **options)


def enqueue_first_attempt(connection: redis.Redis, keys: Keys, alert_id: str, channel: str) -> None:
    """Attempt 1's job, unless it exists (it may have run already: never run it again).
    Used by routing (:mod:`workers.alerts`) and by the outbox's hand-overs and sweep."""
    if not Job.exists(job_id(keys, alert_id, channel, 1), connection=connection):
        enqueue_delivery(connection, keys, alert_id, channel)


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
    options: dict[str, Any] = {
        "job_id": job_id(keys, alert_id, channel, attempt, tag),
        "retry": CRASH_RETRY,
        "on_failure": Callback(ON_FAILURE),
        "job_timeout": JOB_TIMEOUT_S,
        "result_ttl": 86400,
        "failure_ttl": 30 * 86400,
        "description": f"deliver alert {alert_id} to {channel} (attempt {attempt})",
    }
    enqueue_on_alerts_queue(
        connection, keys, DELIVER_JOB, alert_id, channel, attempt, delay_s=delay_s, **options
    )
    return str(options["job_id"])


NOTICE_JOB = "workers.jobs.feed_notice"
NOTICE_ON_FAILURE = "workers.jobs.notice_job_failed"


def enqueue_notice(
    connection: redis.Redis,
    keys: Keys,
    payload: dict[str, Any],
    attempt: int = 1,
    delay_s: float = 0.0,
) -> None:
    """(Re-)enqueue a feed notice; the poller enqueues the first attempt itself."""
    enqueue_on_alerts_queue(
        connection,
        keys,
        NOTICE_JOB,
        payload,
        attempt,
        delay_s=delay_s,
        retry=CRASH_RETRY,
        job_timeout=JOB_TIMEOUT_S,
        on_failure=Callback(NOTICE_ON_FAILURE),
    )


# After a send, its outcome must reach Redis: through a Redis restart (seconds), the
# write is retried this long before giving up (a mark lost after a send would let the
# delivery run again and send twice).
REDIS_PATIENCE_S = 20.0


def patiently(write: Callable[[], None]) -> None:
    """Run ``write``, again through a Redis outage of up to :data:`REDIS_PATIENCE_S`."""
    give_up, pause = time.monotonic() + REDIS_PATIENCE_S, 0.25
    while True:
        try:
            write()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + pause > give_up:
                raise
            log.warning("delivery_redis_unavailable", reason=str(exc), retry_in_s=pause)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


LOCK_RECHECK_S = 10.0
# Delivery lock: taken only when free and the send not yet delivered, both in one script
# (a check before it could be overtaken by an inline send that marks and releases in
# between). Every run has its own owner, so two runs of one job id (enqueued twice by a
# race, or re-run by rq while the first is still sending) never both send; a run that
# died leaves its lock to expire, and the next run waits for that.
_TAKE_LOCK = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""
LOCK_TAKEN, LOCK_BUSY, ALREADY_DELIVERED = 1, 0, 2


def _take_lock(connection: redis.Redis, lock: str, delivered: str, owner: str) -> int:
    script = connection.register_script(_TAKE_LOCK)
    return int(script(keys=[lock, delivered], args=[owner, JOB_TIMEOUT_S + 30]))


# Shared with the outbox's inline sends (:mod:`workers.outbox`): delete a lock only if
# the caller still owns it.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _release_lock(connection: redis.Redis, lock: str, owner: str) -> None:
    """Delete the lock only if it is still ours."""
    connection.register_script(RELEASE_LOCK)(keys=[lock], args=[owner])


def _job_id() -> str:
    job = get_current_job()
    return job.id if job is not None else ""


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
        bury(connection, res, alert_target(alert, channel_name), reason)
        return "dead"
    lock = keys.sending(alert_id, channel_name)
    owner = f"{_job_id() or f'attempt-{attempt}'}:{uuid.uuid4().hex[:12]}"
    taken = _take_lock(connection, lock, keys.delivered(alert_id, channel_name), owner)
    if taken == ALREADY_DELIVERED:
        log.info("alert_already_delivered")
        return "already delivered"
    if taken == LOCK_BUSY:
        # Another job is sending this very alert right now. Look again shortly: if that
        # job succeeds, the delivered mark stops us; if it died, its lock expires.
        enqueue_delivery(
            connection,
            keys,
            alert_id,
            channel_name,
            attempt=attempt,
            delay_s=LOCK_RECHECK_S,
            tag=replay_tag(),
        )
        log.info("alert_delivery_in_progress", attempt=attempt, recheck_in_s=LOCK_RECHECK_S)
        return "in progress elsewhere"
    try:
        deliver_to_channel(alert, channel_name, channel, http=res.http)
    except DeliveryError as exc:
        _release_lock(connection, lock, owner)
        retry = alert_retry(connection, keys, alert_id, channel_name)
        return after_failure(
            connection, res, alert_target(alert, channel_name), attempt, exc, retry
        )
    except BaseException:
        _release_lock(connection, lock, owner)
        raise
    sent_at = time.time()

    def mark() -> None:
        metrics = MetricsBuffer()
        pipe = connection.pipeline(transaction=True)
        mark_delivered(pipe, res, metrics, alert, channel_name, attempt, sent_at, lock, owner)
        metrics.write(pipe, keys)
        pipe.execute()

    patiently(mark)
    log.info("alert_delivered", rule=alert.rule_id, title=alert.item.title, attempt=attempt)
    return "delivered"


@dataclass(frozen=True, slots=True)
class Target:
    """What a delivery carried: named in its attempt log, its retries and its dead letter."""

    id: str  # alert id, digest id or notice id
    kind: deadletter.Kind
    channel: str
    rule: str = ""
    title: str = ""
    alert_ids: tuple[str, ...] = ()
    payload: dict[str, Any] | None = None  # what a replay needs, when not an alert record


def after_failure(
    connection: redis.Redis,
    res: Resources,
    target: Target,
    attempt: int,
    exc: DeliveryError,
    retry: Callable[[int, float], None],
) -> str:
    """Log the failed attempt, then ``retry(next_attempt, delay_s)`` or bury the delivery."""
    ttl = int(res.config.workers.alert_days * 86400)
    failure = deadletter.Attempt(attempt, time.time(), exc.reason, exc.status, exc.transient)
    deadletter.record_attempt(connection, res.keys, target.id, target.channel, failure, ttl)
    policy = policy_for(res, target.channel)
    if should_retry(policy, attempt, exc.transient):
        delay = retry_delay(policy, attempt, exc.retry_after)
        retry(attempt + 1, delay)
        count(connection, res.keys, DELIVERIES, target.channel, target.kind, "retried")
        log.warning(
            f"{target.kind}_delivery_failed",
            reason=exc.reason,
            status=exc.status,
            attempt=attempt,
            retry_in_s=round(delay, 1),
            final=False,
        )
        return "retrying"
    why = exc.reason if not exc.transient else f"{exc.reason} (gave up after {attempt} tries)"
    bury(connection, res, target, why)
    return "dead"


def bury(connection: redis.Redis, res: Resources, target: Target, reason: str) -> None:
    """Make the delivery a dead letter, with every attempt's error; nothing is dropped."""
    letter = deadletter.DeadLetter(
        target=target.id,
        channel=target.channel,
        kind=target.kind,
        reason=reason,
        buried_at=time.time(),
        rule=target.rule,
        title=target.title,
        alert_ids=target.alert_ids,
        payload=target.payload,
        attempts=tuple(deadletter.attempts_of(connection, res.keys, target.id, target.channel)),
    )
    deadletter.bury(connection, res.keys, letter)
    count(connection, res.keys, DELIVERIES, target.channel, target.kind, "dead")
    alerts = [target.id] if target.kind == "alert" else list(target.alert_ids)
    for alert in alerts:
        history(connection, res, "dead", alert, channel=target.channel, reason=reason)
    log.error(
        f"{target.kind}_dead",
        target=target.id,
        rule=target.rule,
        title=target.title,
        reason=reason,
        attempts=len(letter.attempts),
        final=True,
    )


def alert_target(alert: Alert, channel: str) -> Target:
    """An alert's delivery to one channel, as its attempts and dead letter name it."""
    return Target(alert.id, "alert", channel, rule=alert.rule_id, title=alert.item.title)


def alert_retry(
    connection: redis.Redis, keys: Keys, alert_id: str, channel: str
) -> Callable[[int, float], None]:
    """How :func:`after_failure` tries an alert's delivery again: its next attempt's job."""

    def retry(next_attempt: int, delay: float) -> None:
        enqueue_delivery(connection, keys, alert_id, channel, attempt=next_attempt, delay_s=delay)

    return retry


def mark_delivered(
    pipe: redis.client.Pipeline,
    res: Resources,
    metrics: MetricsBuffer,
    alert: Alert,
    channel: str,
    attempt: int,
    at: float,
    lock: str,
    owner: str,
) -> None:
    """What a sent alert leaves, into ``pipe`` (a MULTI): its delivered mark — set before
    its send lock goes, so no re-check finds neither and sends again — the lock released
    (if still ``owner``'s), a history entry; its metrics into ``metrics``. Used by a
    delivery job (:func:`deliver_alert`) and by a batch's inline sends
    (:mod:`workers.outbox`)."""
    ttl = int(res.config.workers.alert_days * 86400)
    pipe.set(res.keys.delivered(alert.id, channel), str(at), ex=ttl)
    pipe.eval(RELEASE_LOCK, 1, lock, owner)
    history(pipe, res, "delivered", alert.id, channel=channel, attempt=attempt)
    metrics.inc(DELIVERIES, channel, "alert", "sent")
    if alert.item.published is not None:
        metrics.observe(PUBLISH_TO_DELIVERY, at - alert.item.published.timestamp(), channel)


def history(
    connection: redis.Redis, res: Resources, event: str, alert_id: str, **fields: str | int
) -> None:
    """Append to the capped alert history stream (read by ``wirewatch alerts list``).

    ``connection`` may be a pipeline: the entry then goes with the caller's writes."""
    entry: dict[str, str | int] = {"event": event, "id": alert_id, **fields}
    connection.xadd(
        res.keys.alert_history(),
        entry,  # type: ignore[arg-type]
        maxlen=res.config.delivery.history_max,
        approximate=True,
    )
