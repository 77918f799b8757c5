"""Per-rule rate limit (``max: 10/h``): a sliding window in one Redis sorted set.

Input: a rule id, its :class:`~monitor.config_types.Rate`, the alert being considered and
``now`` (unix seconds, injected so tests can move time). Output: whether that alert is
over the limit. An alert under the limit is *admitted*: it is recorded in the window and
counts against the rule until it ages out.

Invariants:

- atomic: trim, count and admit are one Lua script, so concurrent workers never admit
  more than ``rate.count`` alerts in any window;
- idempotent: an alert id already in the window is "not over" and is not counted twice,
  so a retried job, or the same alert routed to several channels, uses one slot;
- sliding: an entry counts while ``now - window < score <= now``; the key expires one
  window after the last admission, so idle rules leave nothing behind.

An alert over the limit is not recorded (it goes to a digest, see :mod:`workers.fatigue`)
and asking again later may admit it once the window has room.

Redis keys (to move into :mod:`monitor.keys`):

| key (after the prefix) | type | what | lifetime |
| --- | --- | --- | --- |
| ``rate:{rule_id}`` | zset | admitted alert ids → unix time admitted | one window |
"""

from __future__ import annotations

import math

import redis

from monitor.config_types import Rate
from monitor.keys import Keys

__all__ = ["over_rate", "rate_key"]

# KEYS[1]: the window. ARGV: now, window (s), limit, alert id, TTL (ms).
# Returns 1 when over the limit, 0 when admitted now or earlier.
_ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  return 0
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 1
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 0
"""


def rate_key(keys: Keys, rule_id: str) -> str:
    return keys.rate(rule_id)


def over_rate(
    connection: redis.Redis, keys: Keys, rule_id: str, rate: Rate, alert_id: str, now: float
) -> bool:
    """True when ``alert_id`` does not fit in ``rule_id``'s window; else admit it."""
    ttl_ms = max(1, math.ceil(rate.window_s * 1000))
    script = connection.register_script(_ADMIT)
    result = script(
        keys=[rate_key(keys, rule_id)],
        args=[repr(float(now)), repr(float(rate.window_s)), rate.count, alert_id, ttl_ms],
    )
    return bool(int(result))
