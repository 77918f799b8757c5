"""Durable digest buffers in Redis, one per channel: a restart loses no alert.

Alerts routed to a digest (quiet hours, rate overflow, a channel with ``digest: 15m``; see
:mod:`workers.fatigue`) wait here until a flush job sends them as one message. This
module only keeps the buffer; rendering and delivery belong to the flush job.

Flow (each step one atomic Lua script):

1. :func:`add` buffers an alert id and returns True when no flush is scheduled yet; that
   caller, and only that one, enqueues ``flush_digest(channel)`` at ``flush_at``.
2. The flush job calls :func:`take`: it gets the in-flight :class:`Batch` — the pending
   ids are moved aside as the batch, or the batch left by a flush that crashed is
   returned again, unchanged. ``digest_id`` is a hash of the channel and the sorted ids,
   so a retried flush re-sends the same id and the receiver can drop the repeat.
3. After a successful send it calls :func:`done` with the batch's ids: they are removed,
   the flush flag is cleared, and True means alerts arrived meanwhile — claim the next
   flush with :func:`schedule` and enqueue it when that returns True.

Invariants: nothing leaves Redis before :func:`done`; an alert id is buffered at most once
(pending or in flight); a flush is scheduled when the flag is absent and the buffer is
not empty. A lost flush job (a crash between :func:`add` and the enqueue) is healed when
the flag expires (a minute after ``flush_at``): the next :func:`add`, or a sweep calling
:func:`schedule` for every digest channel at start-up, schedules it again.
:func:`scheduled` reads the flag, e.g. to derive a deterministic rq job id.

Redis keys (to move into :mod:`monitor.keys`):

| key (after the prefix) | type | what | lifetime |
| --- | --- | --- | --- |
| ``digest:{channel}`` | zset | pending alert ids → unix time added (Redis clock) | until flushed |
| ``digest:{channel}:batch`` | zset | the in-flight batch, same scores | until ``done`` |
| ``digest:{channel}:flush`` | string | a flush is scheduled; value: ``flush_at`` | wait + 60 s |
"""

from __future__ import annotations

from typing import NamedTuple

import redis

from monitor.keys import Keys, digest

__all__ = ["FLAG_GRACE_S", "Batch", "add", "done", "schedule", "scheduled", "take"]

FLAG_GRACE_S = 60
"""The flush flag outlives ``flush_at`` by this much: room for a late flush job."""

# Shared tail: claim the flush flag when the buffer (pending or in flight) is not empty.
# KEYS: pending, batch, flag. ARGV[2]: flush_at (unix s), ARGV[3]: grace (s).
_CLAIM_TAIL = """
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) == 0 then
  return 0
end
local wait = math.ceil(tonumber(ARGV[2]) - now)
if wait < 1 then wait = 1 end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', wait + tonumber(ARGV[3])) then
  return 1
end
return 0
"""

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# ARGV[1]: the alert id. Returns 1 when the caller must schedule a flush.
_ADD = (
    _NOW
    + """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
end
"""
    + _CLAIM_TAIL
)

_SCHEDULE = _NOW + _CLAIM_TAIL

# KEYS: pending, batch. ARGV[1]: most ids to move into a new batch (0: all).
# Returns the batch's ids, oldest first.
_TAKE = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  local limit = tonumber(ARGV[1])
  if limit <= 0 then
    if redis.call('EXISTS', KEYS[1]) == 1 then
      redis.call('RENAME', KEYS[1], KEYS[2])
    end
  else
    local pending = redis.call('ZRANGE', KEYS[1], 0, limit - 1, 'WITHSCORES')
    for i = 1, #pending, 2 do
      redis.call('ZADD', KEYS[2], pending[i + 1], pending[i])
      redis.call('ZREM', KEYS[1], pending[i])
    end
  end
end
return redis.call('ZRANGE', KEYS[2], 0, -1)
"""

# KEYS: pending, batch, flag. ARGV: the ids sent. Returns 1 when alerts remain.
# A stale call (a duplicate flush whose ids are gone already) leaves the flag alone: it
# may belong to the next flush, scheduled meanwhile.
_DONE = """
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[2], ARGV[i])
end
if #ARGV > 0 and removed == 0 then
  return 0
end
redis.call('DEL', KEYS[3])
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) > 0 then
  return 1
end
return 0
"""


class Batch(NamedTuple):
    """One digest's worth of alerts; ``digest_id`` is ``""`` when there is nothing to send."""

    digest_id: str
    alert_ids: tuple[str, ...]  # oldest first


def _keys(keys: Keys, channel: str) -> list[str]:
    pending = keys.digest(channel)
    return [pending, f"{pending}:batch", f"{pending}:flush"]


def digest_id(channel: str, alert_ids: tuple[str, ...] | list[str]) -> str:
    """Stable for a set of ids on a channel, whatever their order."""
    return digest("\x00".join([channel, *sorted(alert_ids)]), 32)


def add(connection: redis.Redis, keys: Keys, channel: str, alert_id: str, flush_at: float) -> bool:
    """Buffer ``alert_id`` for ``channel``; True when the caller must schedule the flush."""
    script = connection.register_script(_ADD)
    result = script(keys=_keys(keys, channel), args=[alert_id, repr(float(flush_at)), FLAG_GRACE_S])
    return bool(int(result))


def schedule(connection: redis.Redis, keys: Keys, channel: str, flush_at: float) -> bool:
    """Claim the next flush of a non-empty buffer; True when the caller must enqueue it."""
    script = connection.register_script(_SCHEDULE)
    result = script(keys=_keys(keys, channel), args=["", repr(float(flush_at)), FLAG_GRACE_S])
    return bool(int(result))


def scheduled(connection: redis.Redis, keys: Keys, channel: str) -> float | None:
    """The ``flush_at`` of the scheduled flush, or None when none is scheduled."""
    value = connection.get(_keys(keys, channel)[2])
    return None if value is None else float(value)


def take(connection: redis.Redis, keys: Keys, channel: str, *, limit: int = 0) -> Batch:
    """The batch to send, leaving it in Redis until :func:`done`. ``limit`` 0 takes all.

    Calling it again before :func:`done` (a retried flush) returns the same batch, even if
    alerts arrived in between: those wait for the next flush.
    """
    script = connection.register_script(_TAKE)
    raw = script(keys=_keys(keys, channel)[:2], args=[max(0, limit)])
    ids = tuple(item.decode() if isinstance(item, bytes) else str(item) for item in raw)
    return Batch(digest_id(channel, ids) if ids else "", ids)


def done(
    connection: redis.Redis, keys: Keys, channel: str, alert_ids: tuple[str, ...] | list[str]
) -> bool:
    """Forget ``alert_ids`` after a successful send and clear the flush flag.

    True when alerts remain (they arrived during the flush): schedule another flush,
    preferably through :func:`schedule` so a concurrent :func:`add` does not double it.
    Call it with the empty batch too: that clears the flag. A second call with ids already
    removed is a no-op returning False (the first call answered for them).
    """
    script = connection.register_script(_DONE)
    result = script(keys=_keys(keys, channel), args=list(alert_ids))
    return bool(int(result))
