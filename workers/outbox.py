"""First attempts sent by the batch job that raised the alerts, with rq jobs as fallback.

Why: an rq job per alert × channel cost more worker CPU than the alert's whole batch
(rq's bookkeeping round trips, a job fetch, a lock, an HTTP client). Now the batch job
sends what the fatigue rules say to send *now* itself, at the end of the batch, with the
channel's timeout capped at ``delivery.inline_timeout``; only a slow or failed send
becomes a delivery job (:mod:`workers.dispatch`), with its retries and dead letters.

Crash safety (never lose an alert): routing (:mod:`workers.alerts`) writes each such send
into the ``outbox`` zset — member ``"{alert_id} {channel}"``, score the time after which
it is presumed abandoned — in the same MULTI as the alert's ``queued`` flag. A send that
ends (delivered, handed to a job, or buried) removes its entry in the same pipeline as
its outcome. An entry outliving its deadline belongs to a worker that died between
raising and sending: :func:`sweep`, in every worker's maintenance pass, enqueues its
first-attempt delivery job (a deterministic rq job id; skipped when that job exists).

Never twice: an inline send and a delivery job take the same ``sending:`` lock, and both
check ``delivered:`` under it (one Lua script); a crash between a send and its mark can
repeat it, as with a job, and receivers drop the repeat by ``webhook-id`` (the alert id).

Channels sent inline: webhook, email and log (their timeouts are ours to cap); Apprise
goes through a job. After one slow or failed send, the batch hands that channel's other
sends to jobs at once, so a receiver that is down cannot hold the batch up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import httpx
import redis
import structlog
from rq.job import Job

from monitor.config import Channel, EmailChannel, LogChannel, WebhookChannel
from monitor.keys import Keys
from monitor.metrics import DELIVERIES, PUBLISH_TO_DELIVERY, MetricsBuffer
from workers.delivery import DeliveryError
from workers.delivery import deliver as deliver_to_channel
from workers.dispatch import Target, after_failure, enqueue_delivery, history, job_id
from workers.model import Alert
from workers.resources import Resources

log = structlog.get_logger()

__all__ = ["GRACE_S", "Send", "deadline", "inline", "member", "send_all", "sweep"]

# How long an outbox entry may wait for the batch that wrote it. Past this, a sweep
# enqueues its delivery job; the sends of a live batch are usually long done (a sweep
# that comes early costs a job that finds the alert delivered, or the lock taken).
GRACE_S = 15.0
SWEEP_LIMIT = 200
# An inline send holds the ``sending:`` lock this much longer than its timeout: a worker
# that died mid-send must not keep the swept job waiting for a job-length lock.
LOCK_MARGIN_S = 5
# After a send, its outcome must reach Redis: through a Redis restart (seconds), it is
# retried this long before the batch gives up (the entry is then the sweep's).
REDIS_PATIENCE_S = 20.0

# KEYS: delivered mark, sending lock. ARGV: owner, lock TTL (s).
# -1: delivered already; 0: someone else is sending it; 1: the lock is ours.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the outbox. ARGV: now, lease (s), limit. The due entries, each leased to this
# sweep (re-scored), so two workers' sweeps never enqueue one delivery twice.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, entry in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), entry)
end
return due
"""


@dataclass(frozen=True, slots=True)
class Send:
    """An alert to send to one channel now, recorded in the outbox."""

    alert: Alert
    channel: str


def member(alert_id: str, channel: str) -> str:
    """The outbox entry of one send (alert ids are hex: the space is unambiguous)."""
    return f"{alert_id} {channel}"


def deadline(res: Resources, now: float) -> float:
    """When an entry written at ``now`` is presumed abandoned (its lock has expired)."""
    return now + GRACE_S + res.config.delivery.inline_timeout


def inline(res: Resources, channel: Channel) -> bool:
    """Whether a batch job sends to ``channel`` itself (see the module docstring)."""
    return res.config.delivery.inline_timeout > 0 and isinstance(
        channel, WebhookChannel | EmailChannel | LogChannel
    )


def _capped(channel: Channel, timeout: float) -> Channel:
    """The channel with its timeout capped at ``timeout`` for the first attempt."""
    if isinstance(channel, WebhookChannel) and channel.timeout > timeout:
        return channel.model_copy(update={"timeout": timeout})
    if isinstance(channel, EmailChannel) and channel.smtp.timeout > timeout:
        smtp = channel.smtp.model_copy(update={"timeout": timeout})
        return channel.model_copy(update={"smtp": smtp})
    return channel


def send_all(connection: redis.Redis, res: Resources, sends: Sequence[Send]) -> dict[str, int]:
    """Send each entry's first attempt; returns how many were sent, handed on, skipped."""
    counts = {"sent": 0, "handed_on": 0, "skipped": 0}
    troubled: set[str] = set()  # channels slow or failing in this batch: jobs from now on
    for send in sends:
        if send.channel in troubled:
            _hand_on(connection, res, send, "channel slow or failing in this batch")
            counts["handed_on"] += 1
            continue
        outcome = _send_one(connection, res, send)
        counts[outcome] += 1
        if outcome == "handed_on":
            troubled.add(send.channel)
    return counts


def _send_one(connection: redis.Redis, res: Resources, send: Send) -> str:
    keys, alert, name = res.keys, send.alert, send.channel
    channel = res.config.channels.get(name)
    if channel is None:  # removed by a reload since routing: the job path buries it
        _hand_on(connection, res, send, "channel not in the config any more")
        return "handed_on"
    lock, owner = keys.sending(alert.id, name), f"inline-{alert.id}"
    ttl = math.ceil(res.config.delivery.inline_timeout) + LOCK_MARGIN_S
    claimed = int(connection.eval(_CLAIM, 2, keys.delivered(alert.id, name), lock, owner, ttl))
    if claimed != 1:  # delivered already, or a delivery job is sending it right now
        connection.zrem(keys.outbox(), member(alert.id, name))
        return "skipped"
    capped = _capped(channel, res.config.delivery.inline_timeout)
    try:
        deliver_to_channel(alert, name, capped, http=res.http)
    except DeliveryError as exc:
        if isinstance(exc.__cause__, httpx.TimeoutException | TimeoutError):
            # Slow, not failed: no attempt used up.
            _patiently(partial(_hand_on, connection, res, send, exc.reason, lock, owner))
        else:
            _patiently(partial(_failed, connection, res, send, exc, lock, owner))
        return "handed_on"
    except Exception:
        log.exception("alert_inline_send_failed", alert_id=alert.id, channel=name)
        _patiently(partial(_hand_on, connection, res, send, "unexpected error", lock, owner))
        return "handed_on"
    _patiently(partial(_delivered, connection, res, send, lock, owner))
    return "sent"


def _patiently(write: Callable[[], None]) -> None:
    """Run ``write``, again through a Redis outage of up to :data:`REDIS_PATIENCE_S`."""
    give_up, pause = time.monotonic() + REDIS_PATIENCE_S, 0.25
    while True:
        try:
            write()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + pause > give_up:
                raise
            log.warning("outbox_redis_unavailable", reason=str(exc), retry_in_s=pause)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _delivered(connection: redis.Redis, res: Resources, send: Send, lock: str, owner: str) -> None:
    """One MULTI (so that it can be run again): the mark (before the lock goes), history,
    metrics, the outbox entry."""
    keys, alert, name = res.keys, send.alert, send.channel
    metrics = MetricsBuffer()
    metrics.inc(DELIVERIES, name, "alert", "sent")
    if alert.item.published is not None:
        metrics.observe(PUBLISH_TO_DELIVERY, time.time() - alert.item.published.timestamp(), name)
    ttl = int(res.config.workers.alert_days * 86400)
    pipe = connection.pipeline(transaction=True)
    pipe.set(keys.delivered(alert.id, name), str(time.time()), ex=ttl)
    pipe.eval(_RELEASE, 1, lock, owner)
    history(pipe, res, "delivered", alert.id, channel=name, attempt=1)
    metrics.write(pipe, keys)
    pipe.zrem(keys.outbox(), member(alert.id, name))
    pipe.execute()
    log.info(
        "alert_delivered",
        alert_id=alert.id,
        channel=name,
        rule=alert.rule_id,
        title=alert.item.title,
        attempt=1,
        inline=True,
    )


def _hand_on(
    connection: redis.Redis,
    res: Resources,
    send: Send,
    why: str,
    lock: str | None = None,
    owner: str = "",
) -> None:
    """The first attempt becomes a delivery job, at once and with the full timeout."""
    if lock is not None:
        connection.eval(_RELEASE, 1, lock, owner)
    _enqueue_first(connection, res.keys, send.alert.id, send.channel)
    connection.zrem(res.keys.outbox(), member(send.alert.id, send.channel))
    log.info("alert_handed_to_job", alert_id=send.alert.id, channel=send.channel, reason=why)


def _failed(
    connection: redis.Redis,
    res: Resources,
    send: Send,
    exc: DeliveryError,
    lock: str,
    owner: str,
) -> None:
    """Attempt 1 failed: retried by a job on the channel's policy, or a dead letter."""
    alert, name = send.alert, send.channel
    connection.eval(_RELEASE, 1, lock, owner)

    def retry(next_attempt: int, delay: float) -> None:
        enqueue_delivery(connection, res.keys, alert.id, name, attempt=next_attempt, delay_s=delay)

    target = Target(alert.id, "alert", name, rule=alert.rule_id, title=alert.item.title)
    with structlog.contextvars.bound_contextvars(alert_id=alert.id, channel=name):
        after_failure(connection, res, target, 1, exc, retry)
    connection.zrem(res.keys.outbox(), member(alert.id, name))


def _enqueue_first(connection: redis.Redis, keys: Keys, alert_id: str, channel: str) -> None:
    """Attempt 1's job, unless it exists (it may have run already: never run it again)."""
    if not Job.exists(job_id(keys, alert_id, channel, 1), connection=connection):
        enqueue_delivery(connection, keys, alert_id, channel)


def sweep(connection: redis.Redis, res: Resources, now: float | None = None) -> int:
    """Hand the sends of batches that died to delivery jobs; returns how many.

    Clocks: entries are scored with the raising worker's clock and compared with this
    one's; a skew well under :data:`GRACE_S` only moves the hand-over a little."""
    keys = res.keys
    now = time.time() if now is None else now
    due: Iterable[bytes] = connection.eval(
        _TAKE_DUE, 1, keys.outbox(), repr(now), repr(GRACE_S), SWEEP_LIMIT
    )
    count = 0
    for raw in due:
        entry = raw.decode() if isinstance(raw, bytes) else str(raw)
        alert_id, _, channel = entry.partition(" ")
        if not connection.exists(keys.delivered(alert_id, channel)):
            _enqueue_first(connection, keys, alert_id, channel)
            count += 1
        connection.zrem(keys.outbox(), entry)
    if count:
        log.warning("outbox_swept", deliveries=count, reason="a batch died before sending")
    return count
