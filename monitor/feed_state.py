"""Per-feed state in Redis: validators, body digest, cadence, health, last outcome.

Role: remember between polls (across pollers and restarts) what a conditional GET, the
"skip unchanged bodies" check, the adaptive schedule and an operator need to know.

Storage: one hash per feed at :meth:`monitor.keys.Keys.feed` with the fields of
:class:`FeedState`; times are unix seconds, a field that is absent means unknown/none:

- fetch: ``etag``, ``last_modified``, ``digest``, ``current_url`` (after a 301);
- outcome: ``failures``, ``last_status``, ``last_error``, ``last_error_at``,
  ``last_success``, ``last_polled``, ``next_poll``;
- cadence (:mod:`monitor.schedule`): ``interval``, ``events`` and ``exposure`` (the
  decayed publishing history), ``start_interval`` (the
  configured interval learning started from; a new one restarts learning), ``ttl``
  (the feed's RSS ``<ttl>`` in seconds, kept for 304 polls that carry no body);
- health (:mod:`monitor.health`): ``health``, ``new_by_hour`` (JSON ``{hour: count}``).

Invariants:

- Validators and the body ``digest`` are written only after a successful poll whose new
  items are enqueued and marked seen. A crash before that leaves the old validators, so
  the next poll fetches and filters the body again instead of getting a 304 for items
  never enqueued. A failure never touches them: a malformed body is re-parsed (with
  backoff) rather than mistaken for "unchanged".
- ``failures`` counts consecutive failures; a success resets it to 0.
- :func:`record_poll` (and the schedule's ``finish``, which shares its Lua) writes the
  fields and swaps ``health`` in one script and says whether the health changed, so one
  transition is reported once even when two pollers race on the same feed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

_FLOAT_FIELDS = (
    "last_success",
    "last_polled",
    "next_poll",
    "last_error_at",
    "interval",
    "events",
    "exposure",
    "start_interval",
    "ttl",
)

# A Lua function shared with the schedule's completion script (monitor.shared_schedule),
# so a scheduled poll records its outcome and its next due time in one round trip.
# record(key, health, args, at): args[at] is n, then n field/value pairs, then the names
# of fields to delete. Returns the previous health ("" when none) if it changed, else
# false. A change also leaves ``announce_from`` (the health before it; kept if one is
# already waiting) and ``announce_at`` in the hash until the change has been announced
# (monitor.health.announce): a poller that dies before announcing leaves them for
# another poller's sweep (monitor.health.sweep_unannounced), so no notice is lost.
RECORD_LUA = """
local function record(key, health, args, at)
  local previous = redis.call('HGET', key, 'health')
  local n = tonumber(args[at])
  local set = {'health', health}
  for i = at + 1, at + 2 * n do set[#set + 1] = args[i] end
  redis.call('HSET', key, unpack(set))
  if #args > at + 2 * n then redis.call('HDEL', key, unpack(args, at + 2 * n + 1)) end
  if previous == health then return false end
  if redis.call('HEXISTS', key, 'announce_from') == 0 then
    local t = redis.call('TIME')
    redis.call('HSET', key, 'announce_from', previous or '', 'announce_at', t[1])
  end
  return previous or ''
end
"""

# KEYS[1] the feed hash; ARGV[1] the new health, then record_args.
_RECORD = RECORD_LUA + "return record(KEYS[1], ARGV[1], ARGV, 2)"


@dataclass(frozen=True, slots=True)
class FeedState:
    etag: str | None = None
    last_modified: str | None = None
    digest: str | None = None
    current_url: str | None = None
    failures: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_success: float | None = None
    last_polled: float | None = None
    next_poll: float | None = None
    interval: float | None = None
    events: float | None = None
    exposure: float | None = None
    start_interval: float | None = None
    ttl: float | None = None
    health: str | None = None
    new_by_hour: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> FeedState:
        data: Mapping[Any, Any] = raw
        if any(isinstance(k, bytes) or isinstance(v, bytes) for k, v in raw.items()):
            data = {
                (k.decode() if isinstance(k, bytes) else k): (
                    v.decode() if isinstance(v, bytes) else v
                )
                for k, v in raw.items()
            }
        floats = {name: _float(data.get(name)) for name in _FLOAT_FIELDS}
        return cls(
            etag=data.get("etag") or None,
            last_modified=data.get("last_modified") or None,
            digest=data.get("digest") or None,
            current_url=data.get("current_url") or None,
            failures=int(data.get("failures") or 0),
            last_status=int(data["last_status"]) if data.get("last_status") else None,
            last_error=data.get("last_error") or None,
            health=data.get("health") or None,
            new_by_hour=_buckets(data.get("new_by_hour")),
            **floats,
        )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@functools.lru_cache(maxsize=16384)  # read at every claim; a feed's value rarely changes
def _buckets(value: str | None) -> tuple[tuple[int, int], ...]:
    try:
        raw = json.loads(value) if value else {}
        return tuple(sorted((int(hour), int(count)) for hour, count in raw.items()))
    except (ValueError, AttributeError, TypeError):
        return ()  # a damaged counter costs a day of statistics, not the poll


def encode_buckets(buckets: Sequence[tuple[int, int]]) -> str:
    return json.dumps({str(hour): count for hour, count in buckets}, separators=(",", ":"))


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def load_state(client: aioredis.Redis, key: str) -> FeedState:
    raw = await client.hgetall(key)
    return FeedState.from_hash(raw)


@dataclass(frozen=True, slots=True)
class HealthChange:
    """``record_poll`` changed the feed's health from ``previous`` (``None``: first time)."""

    previous: str | None


def changed_fields(
    state: FeedState, fields: Mapping[str, str | int | float | None]
) -> dict[str, str | int | float | None]:
    """``fields`` less those already stored as they are in ``state`` (which must be what
    the hash holds, e.g. read under the claim's lease): a 304 poll then writes a handful
    of fields instead of twenty."""
    changed: dict[str, str | int | float | None] = {}
    for name, value in fields.items():
        stored = getattr(state, name, _UNKNOWN)  # new_by_hour: a tuple, never equal
        if stored is _UNKNOWN or stored != value:
            changed[name] = value
    return changed


_UNKNOWN = object()


def record_args(fields: Mapping[str, str | int | float | None]) -> list[str | int | float]:
    """The arguments of ``record`` in :data:`RECORD_LUA` (``None`` deletes a field)."""
    setting = [(name, value) for name, value in fields.items() if value is not None]
    args: list[str | int | float] = [len(setting)]
    for name, value in setting:
        args += [name, value]
    args += [name for name, value in fields.items() if value is None]
    return args


def health_change(previous: object) -> HealthChange | None:
    """What ``record`` returned, as a :class:`HealthChange` (``None``: unchanged)."""
    if previous is None:
        return None
    text = previous.decode() if isinstance(previous, bytes) else str(previous)
    return HealthChange(text or None)


async def record_poll(
    client: aioredis.Redis,
    key: str,
    fields: Mapping[str, str | int | float | None],
    *,
    health: str,
) -> HealthChange | None:
    """Write ``fields`` (``None`` deletes a field) and ``health`` atomically; a
    :class:`HealthChange` when the stored health was different. (A poll of a claimed
    feed records through :meth:`monitor.shared_schedule.SharedSchedule.finish`.)"""
    script = client.register_script(_RECORD)
    return health_change(await script(keys=[key], args=[health, *record_args(fields)]))
