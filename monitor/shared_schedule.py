"""The schedule shared in Redis by every ``wirewatch poll`` process.

Storage (names in :mod:`monitor.keys`):

- ``schedule`` — a sorted set, feed id → unix time the feed is due. While a poller polls
  a feed, the score is the end of its *lease* instead;
- ``feedconf:{feed_id}`` — a hash per feed: ``config`` (the :class:`FeedConfig` as JSON)
  and ``start`` (its configured interval), so a poller can poll a feed it was handed
  without having it in its own config file.

Protocol:

1. :meth:`SharedSchedule.sync` (every poller, on start): configured feeds missing from
   the schedule are added, due now (or when the state a previous run left says, so a
   backing-off feed stays backed off); feeds no longer configured are dropped; a changed
   interval brings the due time forward to at most one new interval from now.
2. :meth:`SharedSchedule.claim` — one Lua script, so atomic: take up to N feeds whose
   score is ≤ now, set each score to now + lease, return each with its lease end (the
   *token*), its config and its state (:class:`~monitor.feed_state.FeedState`, so a
   poll needs no read of its own). A claimed feed is not due again until its lease ends,
   so no other poller can take it meanwhile.
3. :meth:`SharedSchedule.complete` — also a Lua script: set the next due time, only if the
   score still equals the token. A poller whose lease ran out (it was slow, or presumed
   dead and its feed taken over) therefore cannot overwrite its successor's lease.
   :meth:`SharedSchedule.finish` does the same and records the poll's outcome in the
   feed's state in the same script: a poll of an unchanged feed costs one round trip
   (plus its share of a batched claim).

A poller that dies mid-poll simply never completes: its lease ends and the feed is due
again, so another poller takes it within one lease plus one claim loop. The lease is
``poller.total_timeout + poller.lease_margin`` and the poller cuts a poll off before
the lease ends, so a live poller never holds a feed past its lease. Sooner than that:
``leases`` records who holds each claimed feed, and :meth:`SharedSchedule.free_orphans`
(every poller runs it about once a second) makes a feed due at once when its holder's
heartbeat key (a few seconds' time-to-live) has expired — a poller killed and restarted
does not leave its feeds stalled for a whole lease.

All times in the schedule are the Redis server's clock (``TIME`` inside the scripts),
so pollers on machines whose clocks disagree still agree on what is due. The scripts
build ``feedconf`` key names from the prefix, so they assume one Redis, not a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from monitor.config import Config
from monitor.feed_state import RECORD_LUA, FeedState, HealthChange, health_change, record_args
from monitor.keys import Keys, feed_id
from monitor.redis_batch import ScriptBatcher

# KEYS[1] schedule, KEYS[2] leases; ARGV: limit, lease seconds, feedconf key prefix,
# poller name, feed state key prefix. Returns {now, earliest score left or "",
# {id1, token1, config1, {state1 field, value, ...}}, ...}.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {tostring(now), ''}
local lease_end = now + tonumber(ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], lease_end, id)
  local token = redis.call('ZSCORE', KEYS[1], id)
  redis.call('HSET', KEYS[2], id, token .. ' ' .. ARGV[4])
  out[#out + 1] = {
    id, token, redis.call('HGET', ARGV[3] .. id, 'config') or '',
    redis.call('HGETALL', ARGV[5] .. id)
  }
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = first[2] end
return out
"""

# KEYS[1] schedule, KEYS[2] leases; ARGV: id, token, claimed at, delay.
# 1 if set, 0 if the lease was lost.
_COMPLETE_LUA = """
local function complete(args)
  if redis.call('ZSCORE', KEYS[1], args[1]) ~= args[2] then return 0 end
  redis.call('HDEL', KEYS[2], args[1])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local delay = tonumber(args[4])
  local due = math.max(tonumber(args[3]) + delay, now + delay / 10)
  redis.call('ZADD', KEYS[1], due, args[1])
  return 1
end
"""
_COMPLETE = _COMPLETE_LUA + "return complete(ARGV)"

# Many polls' finish in one run (monitor.redis_batch): KEYS[1] schedule, KEYS[2] leases,
# then each poll's state hash; ARGV: one JSON array per poll, all strings: id, token,
# claimed at, delay, health, then monitor.feed_state.record_args. A poll's outcome is
# recorded whether or not its lease is still held (as a poll outside the schedule
# would); its due time only with the lease. Returns per poll: 1 or 0 (lease lost), the
# health change.
_FINISH = (
    RECORD_LUA
    + _COMPLETE_LUA
    + """
local out = {}
for i = 1, #ARGV do
  local poll = cjson.decode(ARGV[i])
  local change = record(KEYS[2 + i], poll[5], poll, 6)
  out[#out + 1] = complete(poll)
  out[#out + 1] = change
end
return out
"""
)

# KEYS[1] schedule, KEYS[2] leases; ARGV[1] heartbeat key prefix. Feeds leased by a
# poller without a heartbeat become due now. Returns how many.
_ORPHANS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local leases = redis.call('HGETALL', KEYS[2])
local freed = 0
for i = 1, #leases, 2 do
  local id, value = leases[i], leases[i + 1]
  local space = string.find(value, ' ', 1, true)
  local token, owner = string.sub(value, 1, space - 1), string.sub(value, space + 1)
  if redis.call('EXISTS', ARGV[1] .. owner) == 0 then
    redis.call('HDEL', KEYS[2], id)
    if redis.call('ZSCORE', KEYS[1], id) == token then
      redis.call('ZADD', KEYS[1], now, id)
      freed = freed + 1
    end
  end
end
return freed
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """A feed this poller holds until ``token`` (its lease's end, as Redis wrote it)."""

    feed_id: str
    token: str
    claimed_at: float
    config_json: str
    state: FeedState | None = None  # the feed's state when it was claimed


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    now: float
    next_due: float | None  # the earliest score left in the schedule (a lease, perhaps)
    claims: tuple[Claim, ...]


@dataclass(frozen=True, slots=True)
class SyncReport:
    added: int
    removed: int
    changed: int
    total: int


class SharedSchedule:
    """The schedule of one key prefix, over an async Redis client that decodes replies."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._orphans = client.register_script(_ORPHANS)
        # Polls end in bursts: their finish calls share one script run (monitor.redis_batch).
        self._finish = ScriptBatcher(
            client.register_script(_FINISH),
            shared_keys=[keys.schedule(), keys.leases()],
            width=2,
        )

    async def sync(self, config: Config, *, lease: float, generation: float = 0.0) -> SyncReport:
        """Bring the schedule to the enabled feeds of ``config``.

        ``generation`` orders configs (the file's modification time): pollers may run
        different versions of the config for a while (a rolling deploy). The newest one
        seen decides — it adds, changes and removes feeds; an older one only adds the
        feeds it knows, so it can never take a newer poller's feeds away.
        """
        feeds = {feed_id(feed.url): feed for feed in config.feeds if feed.enabled}
        key = self._keys.schedule()
        generation_key = f"{key}:generation"
        stored = await self._client.get(generation_key)
        newest = stored is None or generation >= float(stored)
        scheduled = {str(fid) for fid in await self._client.zrange(key, 0, -1)}
        ids = list(feeds)
        async with self._client.pipeline(transaction=False) as pipe:
            for fid in ids:
                pipe.hget(self._keys.feed_conf(fid), "start")
                pipe.hget(self._keys.feed(feeds[fid].url), "next_poll")
            replies = await pipe.execute()
        now = await self.server_time()
        added = changed = 0
        async with self._client.pipeline(transaction=True) as pipe:
            for index, fid in enumerate(ids):
                feed = feeds[fid]
                start = config.feed_interval(feed)
                old_start, next_poll = replies[2 * index], replies[2 * index + 1]
                if not newest and fid in scheduled:
                    continue  # a newer config owns this feed's settings
                pipe.hset(
                    self._keys.feed_conf(fid),
                    mapping={"config": feed.model_dump_json(), "start": repr(start)},
                )
                if fid not in scheduled:
                    added += 1
                    pipe.zadd(key, {fid: _resume_at(next_poll, now, start, config)}, nx=True)
                elif old_start is not None and float(old_start) != start:
                    changed += 1
                    # LT only brings the due time forward; never below a lease's end.
                    pipe.zadd(key, {fid: now + max(start, lease)}, lt=True)
            gone = sorted(scheduled - set(ids)) if newest else []
            if newest:
                pipe.set(generation_key, repr(generation))
            if gone:
                pipe.zrem(key, *gone)
                pipe.hdel(self._keys.leases(), *gone)
                pipe.delete(*(self._keys.feed_conf(fid) for fid in gone))
            await pipe.execute()
        return SyncReport(added=added, removed=len(gone), changed=changed, total=len(ids))

    async def claim(self, limit: int, *, lease: float, owner: str = "?") -> ClaimBatch:
        """Take up to ``limit`` due feeds for ``lease`` seconds (atomic) for the poller
        named ``owner`` (whose heartbeat key must exist, see :meth:`free_orphans`)."""
        reply: Sequence[Any] = await self._claim(
            keys=[self._keys.schedule(), self._keys.leases()],
            args=[
                max(0, limit),
                lease,
                self._keys.feed_conf(""),
                owner,
                self._keys.feed_by_id(""),
            ],
        )
        now = float(reply[0])
        claims = tuple(
            Claim(fid, token, now, config, FeedState.from_hash(_pairs(state)))
            for fid, token, config, state in reply[2:]
        )
        return ClaimBatch(now, float(reply[1]) if reply[1] else None, claims)

    async def complete(self, claim: Claim, delay: float) -> bool:
        """Schedule the claimed feed ``delay`` seconds after its poll started (at least
        ``delay / 10`` from now); ``False`` if the lease was lost meanwhile."""
        done = await self._complete(
            keys=[self._keys.schedule(), self._keys.leases()],
            args=[claim.feed_id, claim.token, repr(claim.claimed_at), repr(delay)],
        )
        return bool(done)

    async def finish(
        self,
        claim: Claim,
        delay: float,
        *,
        fields: Mapping[str, str | int | float | None],
        health: str,
    ) -> tuple[bool, HealthChange | None]:
        """Record a poll's outcome in the feed's state (as
        :func:`monitor.feed_state.record_poll`) and :meth:`complete` the claim, in one
        atomic round trip. Returns whether the lease was still held, and the health
        change."""
        payload = [claim.feed_id, claim.token, repr(claim.claimed_at), repr(delay), health]
        payload += [_text(value) for value in record_args(fields)]
        kept, change = await self._finish.call(
            self._keys.feed_by_id(claim.feed_id),
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        )
        return bool(kept), health_change(change)

    async def free_orphans(self) -> int:
        """Make the feeds leased by pollers whose heartbeat expired due now (atomic);
        returns how many. A poller killed mid-poll thus loses its feeds within the
        heartbeat's time-to-live instead of the whole lease."""
        freed = await self._orphans(
            keys=[self._keys.schedule(), self._keys.leases()],
            args=[self._keys.poller_heartbeat("")],
        )
        return int(freed)

    async def release(self, claim: Claim) -> bool:
        """Hand a claimed feed back, due now (a poller stopping mid-poll)."""
        return await self.complete(claim, 0.0)

    async def server_time(self) -> float:
        """The Redis server's clock, the one every score in the schedule is on."""
        seconds, micros = await self._client.time()
        return float(seconds) + micros / 1_000_000

    async def due_at(self, url: str) -> float | None:
        """When the feed is due (or its lease ends); ``None`` if it is not scheduled."""
        score = await self._client.zscore(self._keys.schedule(), feed_id(url))
        return None if score is None else float(score)


def _resume_at(next_poll: str | None, now: float, start: float, config: Config) -> float:
    """A feed new to the schedule keeps the next poll its state recorded (a restart after
    the schedule was lost, or an upgrade), but never more than one backoff cap away."""
    if not next_poll:
        return now
    cap = max(start, config.poller.max_backoff, config.poller.gone_interval)
    return min(max(now, float(next_poll)), now + cap)


def _text(value: str | int | float) -> str:
    """A value as redis-py would write it (``repr`` of a number), for a JSON payload."""
    return value if isinstance(value, str) else repr(value)


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """A Lua ``HGETALL`` reply (field, value, field, value …) as a mapping."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
