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
check ``delivered:`` under it (one Lua script); each :func:`send_all` call holds the lock
under an owner of its own, so two batches that both routed one alert (two copies of a
story processed at once) send it once, and a send whose lock is held is left, with its
entry, to the holder or the sweep. A crash between a send and its mark can repeat it, as
with a job, and receivers drop the repeat by ``webhook-id`` (the alert id).

Round trips: the claims of a batch's sends go in one pipeline, and the outcomes of the
sends that went well (delivered, or found delivered) in one MULTI after the last send;
a failed or slow send writes its hand-over at once. Sends that take longer than the
claimed locks' margin split the writes (:func:`send_all`). While a send runs, a thread
renews its lock and those of the sends whose marks wait for the batch's end: httpx's and
smtplib's timeouts bound each read, not a whole request, so a receiver trickling its
answer could otherwise outlast the lock and let a job or another batch send again.

Channels sent inline: webhook, email and log (their timeouts are ours to cap); Apprise
goes through a job. After one slow or failed send, the batch hands that channel's other
sends to jobs at once, so a receiver that is down cannot hold the batch up.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import redis
import structlog

from monitor.config import Channel, EmailChannel, LogChannel, WebhookChannel
from monitor.metrics import MetricsBuffer
from monitor.zset_lease import LEASE_DUE
from workers.delivery import DeliveryError
from workers.delivery import deliver as deliver_to_channel
from workers.dispatch import (
    RELEASE_LOCK,
    after_failure,
    alert_retry,
    alert_target,
    enqueue_first_attempt,
    mark_delivered,
    patiently,
)
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

# KEYS: delivered mark, sending lock. ARGV: owner, lock TTL (s).
# -1: delivered already; 0: someone else is sending it; 1: the lock is ours.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 1
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
    """Send each entry's first attempt; returns how many were sent, handed on, skipped.

    Two round trips for the whole batch on the usual path: every send's claim in one
    pipeline, every outcome that is not a hand-over (delivered, skipped) in one MULTI at
    the end (a crash before it repeats those sends, as a crash between one send and its
    mark did: receivers drop the repeat by ``webhook-id``)."""
    counts = {"sent": 0, "handed_on": 0, "skipped": 0}
    troubled: set[str] = set()  # channels slow or failing in this batch: jobs from now on
    marks = _Marks(res)
    # This call's own lock owner: another batch routing the same alert at the same time
    # (two copies of one story), or a retry of this batch while a dead run's lock lasts,
    # finds the lock taken and leaves the send to its holder (or to the sweep).
    owner = f"inline-{secrets.token_hex(8)}"
    claims = _claim(connection, res, sends, owner)
    claimed_at = time.monotonic()
    try:
        for send, claimed in zip(sends, claims, strict=True):
            lock = res.keys.sending(send.alert.id, send.channel)
            if claimed is None:  # removed by a reload since routing: the job path buries it
                reason = "channel not in the config any more"
                patiently(partial(_hand_on, connection, res, send, reason))
                counts["handed_on"] += 1
                continue
            if claimed == 1 and time.monotonic() - claimed_at > LOCK_MARGIN_S - 1:
                # Slow sends before this one: the locks claimed together are aging. Write
                # the outcomes so far (their locks go with them), renew this one's.
                patiently(partial(marks.write, connection))
                claimed = _claim(connection, res, [send], owner)[0]
            if claimed != 1:
                if claimed == -1:  # delivered already: its outbox entry goes
                    marks.skipped(send)
                # else someone holds its lock (a delivery job, another batch): the entry
                # stays, for the holder's marks to remove or the sweep to hand on
                counts["skipped"] += 1
                continue
            if send.channel in troubled:
                why = "channel slow or failing in this batch"
                patiently(partial(_hand_on, connection, res, send, why, lock, owner))
                counts["handed_on"] += 1
                continue
            outcome = _send_one(connection, res, send, lock, owner, marks)
            counts[outcome] += 1
            if outcome == "handed_on":
                troubled.add(send.channel)
    finally:
        patiently(partial(marks.write, connection))
    return counts


def _claim(
    connection: redis.Redis, res: Resources, sends: Sequence[Send], owner: str
) -> list[int | None]:
    """Per send (one round trip): 1 the lock is ``owner``'s, 0 someone else sends it, -1
    delivered; None when its channel is gone from the config."""
    ttl = math.ceil(res.config.delivery.inline_timeout) + LOCK_MARGIN_S
    pipe = connection.pipeline(transaction=False)
    known = [send for send in sends if send.channel in res.config.channels]
    for send in known:
        lock = res.keys.sending(send.alert.id, send.channel)
        pipe.eval(_CLAIM, 2, res.keys.delivered(send.alert.id, send.channel), lock, owner, ttl)
    replies = iter(pipe.execute() if known else [])
    return [int(next(replies)) if s.channel in res.config.channels else None for s in sends]


class _Marks:
    """The outcomes of a batch's sends, written together (one MULTI, so it can be run
    again): per delivered send its mark (before its lock goes), history and outbox
    entry; per skipped send its outbox entry; the deliveries' metrics."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.delivered: list[tuple[Send, str, str, float]] = []
        self.skipped_: list[Send] = []

    def skipped(self, send: Send) -> None:
        self.skipped_.append(send)

    def sent(self, send: Send, lock: str, owner: str) -> None:
        self.delivered.append((send, lock, owner, time.time()))

    def locks(self) -> list[str]:
        """The locks of the sends delivered and not yet marked."""
        return [lock for _, lock, _, _ in self.delivered]

    def write(self, connection: redis.Redis) -> None:
        if not self.delivered and not self.skipped_:
            return
        res, keys = self.res, self.res.keys
        metrics = MetricsBuffer()
        pipe = connection.pipeline(transaction=True)
        for send, lock, owner, at in self.delivered:
            alert, name = send.alert, send.channel
            mark_delivered(pipe, res, metrics, alert, name, 1, at, lock, owner)
            pipe.zrem(keys.outbox(), member(alert.id, name))
        for send in self.skipped_:
            pipe.zrem(keys.outbox(), member(send.alert.id, send.channel))
        metrics.write(pipe, keys)
        pipe.execute()
        self.delivered, self.skipped_ = [], []


# KEYS: locks. ARGV: owner, TTL (s). Extends each lock still held by ``owner``.
_RENEW = """
for _, lock in ipairs(KEYS) do
  if redis.call('GET', lock) == ARGV[1] then redis.call('EXPIRE', lock, ARGV[2]) end
end
return 0
"""


class _LockKeeper:
    """One thread per process (rather than one per send) that renews the locks of the
    sends in flight. Started on first use; a forked child (``workers.fork``) inherits
    neither the thread nor a consistent mutex, so it starts afresh (``register_at_fork``)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)
        # entry id → (connection, locks, owner, ttl, next renewal on the monotonic clock)
        self._entries: dict[int, list[Any]] = {}
        self._next_id = 0
        self._pid = 0

    @contextmanager
    def kept(
        self, connection: redis.Redis, locks: Callable[[], list[str]], owner: str, ttl: int
    ) -> Iterator[None]:
        with self._mutex:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="outbox-lock-keeper", daemon=True).start()
            self._next_id += 1
            key = self._next_id
            self._entries[key] = [connection, locks, owner, ttl, time.monotonic() + ttl / 3]
            self._wake.notify()
        try:
            yield
        finally:
            with self._mutex:
                del self._entries[key]

    def _run(self) -> None:
        while True:
            with self._mutex:
                while not self._entries:
                    self._wake.wait()
                now = time.monotonic()
                due = [entry for entry in self._entries.values() if entry[4] <= now]
                for entry in due:
                    entry[4] = now + entry[3] / 3
                soonest = min(entry[4] for entry in self._entries.values())
            for connection, locks, owner, ttl, _ in due:  # Redis calls outside the mutex
                try:
                    held = locks()
                    connection.eval(_RENEW, len(held), *held, owner, ttl)
                except Exception as exc:  # the thread must outlive any one renewal
                    log.warning("outbox_lock_renewal_failed", reason=str(exc))
            with self._mutex:
                self._wake.wait(max(0.0, soonest - time.monotonic()))


_KEEPER = _LockKeeper()


def _locks_kept(
    connection: redis.Redis, locks: Callable[[], list[str]], owner: str, ttl: int
) -> Any:
    """Renew ``locks()`` (those still ``owner``'s) every third of ``ttl`` while the block
    runs; a Redis error in between is logged and the next renewal tries again."""
    return _KEEPER.kept(connection, locks, owner, ttl)


def _send_one(
    connection: redis.Redis, res: Resources, send: Send, lock: str, owner: str, marks: _Marks
) -> str:
    alert, name = send.alert, send.channel
    ttl = math.ceil(res.config.delivery.inline_timeout) + LOCK_MARGIN_S
    try:
        capped = _capped(res.config.channels[name], res.config.delivery.inline_timeout)
        with _locks_kept(connection, lambda: [lock, *marks.locks()], owner, ttl):
            deliver_to_channel(alert, name, capped, http=res.http)
    except DeliveryError as exc:
        if isinstance(exc.__cause__, httpx.TimeoutException | TimeoutError):
            # Slow, not failed: no attempt used up.
            patiently(partial(_hand_on, connection, res, send, exc.reason, lock, owner))
        else:
            patiently(partial(_failed, connection, res, send, exc, lock, owner))
        return "handed_on"
    except Exception:
        log.exception("alert_inline_send_failed", alert_id=alert.id, channel=name)
        patiently(partial(_hand_on, connection, res, send, "unexpected error", lock, owner))
        return "handed_on"
    marks.sent(send, lock, owner)
    log.info(
        "alert_delivered",
        alert_id=alert.id,
        channel=name,
        rule=alert.rule_id,
        title=alert.item.title,
        attempt=1,
        inline=True,
    )
    return "sent"


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
        connection.eval(RELEASE_LOCK, 1, lock, owner)
    enqueue_first_attempt(connection, res.keys, send.alert.id, send.channel)
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
    connection.eval(RELEASE_LOCK, 1, lock, owner)
    retry = alert_retry(connection, res.keys, alert.id, name)
    with structlog.contextvars.bound_contextvars(alert_id=alert.id, channel=name):
        after_failure(connection, res, alert_target(alert, name), 1, exc, retry)
    connection.zrem(res.keys.outbox(), member(alert.id, name))


def sweep(connection: redis.Redis, res: Resources, now: float | None = None) -> int:
    """Hand the sends of batches that died to delivery jobs; returns how many.

    Clocks: entries are scored with the raising worker's clock and compared with this
    one's; a skew well under :data:`GRACE_S` only moves the hand-over a little."""
    keys = res.keys
    now = time.time() if now is None else now
    due: Iterable[bytes] = connection.eval(
        LEASE_DUE, 1, keys.outbox(), repr(now), SWEEP_LIMIT, repr(GRACE_S)
    )
    count = 0
    for raw in due:
        entry = raw.decode() if isinstance(raw, bytes) else str(raw)
        alert_id, _, channel = entry.partition(" ")
        if not connection.exists(keys.delivered(alert_id, channel)):
            enqueue_first_attempt(connection, keys, alert_id, channel)
            count += 1
        connection.zrem(keys.outbox(), entry)
    if count:
        log.warning("outbox_swept", deliveries=count, reason="a batch died before sending")
    return count
