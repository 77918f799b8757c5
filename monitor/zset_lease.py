"""Take the due members of a "due at" sorted set, each leased, in one atomic step.

Role: the WebSub request loop (:mod:`monitor.websub`) and the alert outbox sweep
(:mod:`workers.outbox`) keep work in a sorted set scored by when it is due. Whoever takes
an entry pushes its score forward by a lease in the same step, so two processes never
take one entry at once, and an entry whose taker died comes due again when its lease
ends. The taker removes (or re-scores) the entry when the work is done.

``KEYS[1]`` the sorted set; ``ARGV``: now (unix seconds), at most how many to take, the
lease in seconds. Returns the members taken.
"""

from __future__ import annotations

__all__ = ["LEASE_DUE"]

LEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), member)
end
return due
"""
