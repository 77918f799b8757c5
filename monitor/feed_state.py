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
- :func:`record_poll` writes the fields and swaps ``health`` in one Lua script and says
  whether the health changed, so one transition is reported once even when two pollers
  race on the same feed.
"""

from __future__ import annotations

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

# KEYS[1] the feed hash; ARGV[1] the new health; ARGV[2] n fields to set, then n pairs,
# then the names of fields to delete. Returns the previous health ("" when none) if it
# changed, else nil.
_RECORD = """
local previous = redis.call('HGET', KEYS[1], 'health')
local n = tonumber(ARGV[2])
for i = 3, 2 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 3 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[1], 'health', ARGV[1])
if previous == ARGV[1] then return false end
return previous or ''
"""


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
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
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


async def record_poll(
    client: aioredis.Redis,
    key: str,
    fields: Mapping[str, str | int | float | None],
    *,
    health: str,
) -> HealthChange | None:
    """Write ``fields`` (``None`` deletes a field) and ``health`` atomically; a
    :class:`HealthChange` when the stored health was different."""
    setting = [(name, value) for name, value in fields.items() if value is not None]
    deleting = [name for name, value in fields.items() if value is None]
    args: list[str | int | float] = [health, len(setting)]
    for name, value in setting:
        args += [name, value]
    args += deleting
    previous = await client.eval(_RECORD, 1, key, *args)
    if previous is None:
        return None
    text = previous.decode() if isinstance(previous, bytes) else str(previous)
    return HealthChange(text or None)
