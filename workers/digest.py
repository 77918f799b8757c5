"""Durable digest buffers in Redis, one per channel: a restart loses no alert.

Alerts routed to a digest (quiet hours, rate overflow, a channel with ``digest: 15m``; see
:mod:`workers.fatigue`) wait here until a flush job sends them as one message. This
module only keeps the buffer; rendering and delivery belong to the flush job.

Each buffered alert has a **not-before** time, its score: the end of the rule's quiet
window for an alert held by quiet hours (it must not leave earlier, whatever other rules
share the channel), else the time it was added (it may go out with any flush). A flush
takes only the alerts that are due, by Redis's clock, so a quiet-held alert stays behind
when another rule's digest goes out, and a quiet window hours away delays nobody else.

Flow (each step one atomic Lua script):

1. :func:`add` buffers an alert id and returns a **token** when the caller must enqueue
   ``flush_digest(channel, 1, token)`` at ``flush_at``: no flush was scheduled, or the
   scheduled one comes later than ``flush_at`` and no batch is in flight (the flag then
   moves earlier, and the later job finds the flag no longer holds its token: stale).
2. The flush job calls :func:`take` with its token: None when the flag holds another
   token (a stale job: it does nothing, the flag's owner does the work); else the
   in-flight :class:`Batch` — the due pending ids are moved aside as the batch, or the
   batch left by a flush that crashed is returned again, unchanged. ``digest_id`` is a hash
   of the channel and the sorted ids, so a retried flush re-sends the same id and the
   receiver can drop the repeat. A flush that finds the flag gone (it expired while the
   job queued) takes it over: it is the only flush left.
3. After a successful send it calls :func:`done` with the batch's ids: they are removed,
   its flag is cleared, and the :class:`Remaining` alerts (those held for later, or that
   arrived meanwhile) with the earliest not-before among them say when to flush next:
   claim it with :func:`schedule` and enqueue it when that returns a token. A flush that
   found nothing due calls :func:`done` with no ids, and schedules the next for when the
   first alert is due. A failed send's retry keeps its token; :func:`retain` keeps the
   flag alive until the retry runs.

Invariants: nothing leaves Redis before :func:`done`; an alert id is buffered at most once
(pending or in flight); an alert never joins a batch before its not-before; a flush is
scheduled when the flag is absent and the buffer is not empty, and the flag's token names
the one flush job that may act (jobs enqueued by an older version carry no token and act
regardless). A lost flush job (a crash between :func:`add` and the enqueue) is healed
when the flag expires (a minute after ``flush_at``): the next :func:`add`, or the sweep
every worker's maintenance pass runs (:func:`schedule` with ``only_if_absent``, for every
digest channel), schedules it again. While a batch is out, :func:`take` holds the flag
for the flush job's whole time limit, so the sweep never starts a second flush of it.
:func:`scheduled` reads the flag's ``flush_at``.

Redis keys (to move into :mod:`monitor.keys`):

| key (after the prefix) | type | what | lifetime |
| --- | --- | --- | --- |
| ``digest:{channel}`` | zset | pending alert ids → not-before, unix s | until flushed |
| ``digest:{channel}:batch`` | zset | the in-flight batch, same scores | until ``done`` |
| ``digest:{channel}:flush`` | string | the scheduled flush: ``{flush_at}:{token}`` | wait + 60 s |
"""

from __future__ import annotations

import secrets
from typing import NamedTuple

import redis

from monitor.keys import Keys, digest
from monitor.redis_text import as_text

__all__ = [
    "FLAG_GRACE_S",
    "FLUSH_JOB_TIMEOUT_S",
    "Batch",
    "Remaining",
    "add",
    "done",
    "retain",
    "schedule",
    "scheduled",
    "take",
]

FLAG_GRACE_S = 60
"""The flush flag outlives ``flush_at`` by this much: room for a late flush job."""

FLUSH_JOB_TIMEOUT_S = 120
"""rq's time limit of a flush job; the flag is held this long (plus the grace) while a
batch is out, so no second flush starts on the same batch while the first may still run."""

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function flush_at_of(value)
  return tonumber(string.match(value, '^[^:]*'))
end
local function set_flag(key, value, at, grace)
  local wait = math.ceil(at - now)
  if wait < 1 then wait = 1 end
  redis.call('SET', key, value, 'EX', wait + grace)
end
"""

# Shared tail: claim the flush flag when the buffer (pending or in flight) is not empty
# and no flush is scheduled, or move it earlier when the scheduled one is later and no
# batch is in flight (that flush's own done schedules what it leaves).
# KEYS: pending, batch, flag. ARGV[2]: flush_at (unix s), ARGV[3]: grace (s),
# ARGV[4]: the new flag value (token), ARGV[6]: "1" to claim only when no flush is
# scheduled (never move one earlier). Returns the token, or nil.
_CLAIM_TAIL = """
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) == 0 then
  return false
end
local at = tonumber(ARGV[2])
local current = redis.call('GET', KEYS[3])
if current then
  if ARGV[6] == '1' or redis.call('EXISTS', KEYS[2]) == 1 then
    return false
  end
  local scheduled = flush_at_of(current)
  if scheduled == nil or scheduled <= at then
    return false
  end
end
set_flag(KEYS[3], ARGV[4], at, tonumber(ARGV[3]))
return ARGV[4]
"""

# ARGV[1]: the alert id, ARGV[5]: its not-before (unix s; "" for now).
_ADD = (
    _NOW
    + """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local not_before = now
  if ARGV[5] ~= '' then not_before = tonumber(ARGV[5]) end
  redis.call('ZADD', KEYS[1], 'NX', not_before, ARGV[1])
end
"""
    + _CLAIM_TAIL
)

_SCHEDULE = _NOW + _CLAIM_TAIL

# KEYS: pending, batch, flag. ARGV[1]: most ids to move into a new batch (0: all due),
# ARGV[2]: the flush's token ("": a job without one, acts regardless), ARGV[3]: grace,
# ARGV[4]: how long the flag is held while a batch is out (the job's time limit + grace).
# Returns nil for a stale token, else the batch's ids, earliest not-before first.
_TAKE = (
    _NOW
    + """
if ARGV[2] ~= '' then
  local current = redis.call('GET', KEYS[3])
  if not current then
    redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
  elseif current ~= ARGV[2] then
    return false
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local limit = tonumber(ARGV[1])
  local due = redis.call('ZCOUNT', KEYS[1], '-inf', now)
  if limit <= 0 and due > 0 and due == redis.call('ZCARD', KEYS[1]) then
    redis.call('RENAME', KEYS[1], KEYS[2])
  elseif due > 0 then
    if limit <= 0 or limit > due then limit = due end
    local pending = redis.call(
      'ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
    for i = 1, #pending, 2 do
      redis.call('ZADD', KEYS[2], pending[i + 1], pending[i])
      redis.call('ZREM', KEYS[1], pending[i])
    end
  end
end
local batch = redis.call('ZRANGE', KEYS[2], 0, -1)
if #batch > 0 then
  -- The flag must outlive the job sending the batch, or a sweep would see no flush
  -- scheduled and start a second one that sends the same batch.
  if ARGV[2] ~= '' then
    redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[4]))
  elseif redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
  end
end
return batch
"""
)

# KEYS: pending, batch, flag. ARGV[1]: the flush's token ("": none, clear any flag),
# ARGV[2..]: the ids sent. Returns {alerts left, earliest not-before or "", now}.
# A call clears the flag only while it holds the call's token (a later flush may own it).
# A legacy call (no token) whose ids are gone already (a duplicate flush) returns at once,
# leaving the flag alone; a call with a token always reports what is left, so its caller
# schedules the next flush even when another flush sent the ids first.
_DONE = (
    _NOW
    + """
local clock_now = string.format('%.6f', now)
local removed = 0
for i = 2, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[2], ARGV[i])
end
if ARGV[1] == '' and #ARGV > 1 and removed == 0 then
  return {0, '', clock_now}
end
if ARGV[1] == '' or redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
local left = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
local earliest = ''
for _, key in ipairs({KEYS[1], KEYS[2]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 and (earliest == '' or tonumber(first[2]) < tonumber(earliest)) then
    earliest = first[2]
  end
end
return {left, earliest, clock_now}
"""
)

# KEYS: flag. ARGV[1]: the token of a flush whose retry runs at ARGV[2], ARGV[3]: grace.
# Keeps (or takes back) the flag for that retry unless another flush comes first.
_RETAIN = (
    _NOW
    + """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  local scheduled = flush_at_of(current)
  if scheduled == nil or scheduled <= tonumber(ARGV[2]) then
    return 0
  end
end
set_flag(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
"""
)


class Batch(NamedTuple):
    """One digest's worth of alerts; ``digest_id`` is ``""`` when there is nothing to send."""

    digest_id: str
    alert_ids: tuple[str, ...]  # earliest not-before first (added first, for most)


class Remaining(NamedTuple):
    """What :func:`done` left in the buffer, and when the first of it is due."""

    held: int  # alerts still buffered, pending or in flight
    not_before: float | None  # the earliest not-before among them; None when held is 0
    now: float  # Redis's clock then: the one not-before is measured against

    def due_in(self) -> float:
        """Seconds until the first alert left is due (0 when it is, or none is left)."""
        return 0.0 if self.not_before is None else max(0.0, self.not_before - self.now)


def _keys(keys: Keys, channel: str) -> list[str]:
    pending = keys.digest(channel)
    return [pending, f"{pending}:batch", f"{pending}:flush"]


def _token(flush_at: float) -> str:
    return f"{float(flush_at)!r}:{secrets.token_hex(8)}"


def digest_id(channel: str, alert_ids: tuple[str, ...] | list[str]) -> str:
    """Stable for a set of ids on a channel, whatever their order."""
    return digest("\x00".join([channel, *sorted(alert_ids)]), 32)


def add(
    connection: redis.Redis,
    keys: Keys,
    channel: str,
    alert_id: str,
    flush_at: float,
    *,
    not_before: float | None = None,
) -> str | None:
    """Buffer ``alert_id`` for ``channel``; the token of the flush the caller must enqueue
    at ``flush_at``, or None when an earlier (or running) flush is scheduled already.

    ``not_before`` (unix s): the alert must not be sent earlier (quiet hours); None: it
    may go out with the channel's next flush.
    """
    script = connection.register_script(_ADD)
    args: list[str | int] = [alert_id, repr(float(flush_at)), FLAG_GRACE_S, _token(flush_at)]
    args.append("" if not_before is None else repr(float(not_before)))
    result = script(keys=_keys(keys, channel), args=args)
    return None if result is None else as_text(result)


def schedule(
    connection: redis.Redis,
    keys: Keys,
    channel: str,
    flush_at: float,
    *,
    only_if_absent: bool = False,
) -> str | None:
    """Claim the next flush of a non-empty buffer (or move a later one to ``flush_at``,
    unless ``only_if_absent``: the sweep must not pull a digest forward); the token of the
    flush the caller must enqueue, or None."""
    script = connection.register_script(_SCHEDULE)
    args: list[str | int] = ["", repr(float(flush_at)), FLAG_GRACE_S, _token(flush_at)]
    args += ["", "1" if only_if_absent else ""]
    result = script(keys=_keys(keys, channel), args=args)
    return None if result is None else as_text(result)


def scheduled(connection: redis.Redis, keys: Keys, channel: str) -> float | None:
    """The ``flush_at`` of the scheduled flush, or None when none is scheduled."""
    value = connection.get(_keys(keys, channel)[2])
    return None if value is None else float(as_text(value).split(":", 1)[0])


def take(
    connection: redis.Redis, keys: Keys, channel: str, *, limit: int = 0, token: str | None = None
) -> Batch | None:
    """The batch to send, leaving it in Redis until :func:`done`. ``limit`` 0 takes all
    that are due; an empty batch when none is.

    Calling it again before :func:`done` (a retried flush) returns the same batch, even if
    alerts arrived in between: those wait for the next flush. With a ``token`` (from
    :func:`add` or :func:`schedule`): None when the flag holds another token, and this
    flush is stale; a missing flag is taken over. Without one, it acts regardless.
    """
    script = connection.register_script(_TAKE)
    hold = FLUSH_JOB_TIMEOUT_S + FLAG_GRACE_S
    args: list[str | int] = [max(0, limit), token or "", FLAG_GRACE_S, hold]
    raw = script(keys=_keys(keys, channel), args=args)
    if raw is None:
        return None
    ids = tuple(as_text(item) for item in raw)
    return Batch(digest_id(channel, ids) if ids else "", ids)


def done(
    connection: redis.Redis,
    keys: Keys,
    channel: str,
    alert_ids: tuple[str, ...] | list[str],
    *,
    token: str | None = None,
) -> Remaining:
    """Forget ``alert_ids`` after a successful send and clear the flush flag (only if it
    still holds ``token``, when one is given).

    What remains (alerts held for later, or that arrived during the flush) needs another
    flush: claim it through :func:`schedule`, so a concurrent :func:`add` does not double
    it. Call it with the empty batch too: that clears the flag. Without a token, a second
    call with ids already removed is a no-op leaving nothing (the first call answered).
    """
    script = connection.register_script(_DONE)
    left, earliest, now = script(keys=_keys(keys, channel), args=[token or "", *alert_ids])
    first = as_text(earliest)
    return Remaining(int(left), float(first) if first else None, float(as_text(now)))


def retain(connection: redis.Redis, keys: Keys, channel: str, token: str, flush_at: float) -> bool:
    """Keep the flag of the flush holding ``token`` until its retry at ``flush_at`` has run.

    False when another flush, scheduled no later, holds it: that one sends the batch in
    flight, and the retry need not be enqueued.
    """
    script = connection.register_script(_RETAIN)
    result = script(
        keys=_keys(keys, channel)[2:], args=[token, repr(float(flush_at)), FLAG_GRACE_S]
    )
    return bool(int(result))
