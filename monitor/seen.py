"""The first-seen filter: which item keys of a feed have never left the poller before,
and which were seen but have been edited since.

Role: make an unchanged (or partly changed) feed enqueue only what is new — or what
changed: an entry that keeps its GUID but gets a new headline or summary is sent again
(same key, new text), and the workers tell a material update from a cosmetic edit
(:mod:`workers.updates`).

Storage, per feed (:meth:`monitor.keys.Keys.seen` and ``seen_revisions``):

- a sorted set: members are item keys, scores the unix time the key was last *seen in
  the feed*;
- a hash: item key → its :class:`Revision`, ``"{entry}:{text}"`` — a digest of the
  entry's raw bytes (when the poller scanned the body, :mod:`monitor.entry_scan`) and a
  digest of its normalised title and summary. The entry digest lets a scanned body skip
  parsing entries whose bytes did not change; the text digest decides whether a parsed
  entry really changed (a new ``<pubDate>`` alone changes the bytes, not the text).

Protocol (the order is what makes "nothing is lost" hold):

1. :func:`seen_state` — which keys are seen, and their revisions (read-only, one round
   trip);
2. the poller enqueues the new and the edited items;
3. :func:`mark_seen` — all keys of the body are written with score ``now``, the new
   revisions stored, and keys not seen for ``keep_seconds`` forgotten (both structures),
   atomically.

A crash between 2 and 3 re-enqueues the same items on the next poll; the workers'
dedupe absorbs that. The reverse order could lose items, so it is not offered.

Why "last seen" and not "first seen" as the score: a key is trimmed only after it has
been absent from the feed for ``keep_seconds`` (``poller.seen_days``). An evergreen
entry that stays in a feed for months is therefore never trimmed and re-enqueued.
Trimming runs only after a changed body was parsed, so a feed that answers 304 for
longer than ``seen_days`` keeps its set until it changes, and then refreshes it first.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

# KEYS[1]: the seen zset, KEYS[2]: the revisions hash. ARGV[1]: now, ARGV[2]: the
# oldest score kept, ARGV[3]: how many keys follow; then the keys, then revision pairs.
_MARK_SEEN = """
local count = tonumber(ARGV[3])
for i = 4, 3 + count do
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
end
for i = 4 + count, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
for i = 1, #old, 500 do
  local chunk = {unpack(old, i, math.min(i + 499, #old))}
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('HDEL', KEYS[2], unpack(chunk))
end
return #old
"""


# KEYS[1]: the seen zset, KEYS[2]: the revisions hash; ARGV[1]: the item keys as a JSON
# array. Returns, per key: 1 if seen else nil, then its revision or nil.
_SEEN_STATE = """
local out = {}
for i, item in ipairs(cjson.decode(ARGV[1])) do
  out[2 * i - 1] = redis.call('ZSCORE', KEYS[1], item) and 1
  out[2 * i] = redis.call('HGET', KEYS[2], item)
end
return out
"""

_SCRIPTS: weakref.WeakKeyDictionary[aioredis.Redis, tuple[AsyncScript, AsyncScript]] = (
    weakref.WeakKeyDictionary()
)


def _scripts(client: aioredis.Redis) -> tuple[AsyncScript, AsyncScript]:
    """The two scripts registered on ``client``, once (registering hashes the text)."""
    scripts = _SCRIPTS.get(client)
    if scripts is None:
        scripts = _SCRIPTS[client] = (
            client.register_script(_SEEN_STATE),
            client.register_script(_MARK_SEEN),
        )
    return scripts


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def entry_revision(raw: bytes) -> str:
    """The digest of an entry's raw bytes, as the scan found them."""
    return _digest(raw)


def text_revision(title: str, summary: str) -> str:
    """The digest of an item's normalised title and summary."""
    return _digest(f"{title}\x1f{summary}".encode())


@dataclass(frozen=True, slots=True)
class Revision:
    """What an entry looked like when last seen; an empty part means "not known"."""

    entry: str = ""
    text: str = ""

    def __str__(self) -> str:
        return f"{self.entry}:{self.text}"

    @classmethod
    def parse(cls, raw: str | bytes | None) -> Revision | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        entry, _, digest = text.partition(":")
        return cls(entry, digest)


async def unseen(client: aioredis.Redis, key: str, item_keys: Sequence[str]) -> list[str]:
    """The subset of ``item_keys`` never marked seen, in the given order."""
    if not item_keys:
        return []
    scores = await client.zmscore(key, list(item_keys))
    return [k for k, score in zip(item_keys, scores, strict=True) if score is None]


async def seen_state(
    client: aioredis.Redis, key: str, revisions_key: str, item_keys: Sequence[str]
) -> tuple[list[bool], list[Revision | None]]:
    """For each of ``item_keys``: whether it was seen, and its stored revision.

    One script call with the keys as one JSON argument: a changed feed asks about every
    entry of its body (tens of keys), and a pipeline of ZMSCORE + HMGET costs the poller
    several times the CPU of one call."""
    if not item_keys:
        return [], []
    script = _scripts(client)[0]
    flat = await script(
        keys=[key, revisions_key], args=[json.dumps(list(item_keys), ensure_ascii=False)]
    )
    return [bool(seen) for seen in flat[::2]], [Revision.parse(raw) for raw in flat[1::2]]


async def mark_seen(
    client: aioredis.Redis,
    key: str,
    item_keys: Sequence[str],
    *,
    now: float,
    keep_seconds: float,
    revisions_key: str | None = None,
    revisions: Mapping[str, Revision] | None = None,
) -> None:
    """Record ``item_keys`` as seen at ``now`` and store ``revisions``; forget keys unseen
    for ``keep_seconds`` (and their revisions)."""
    pairs = [part for item, rev in (revisions or {}).items() for part in (item, str(rev))]
    script = _scripts(client)[1]  # EVALSHA; loads the script when missing
    await script(
        keys=[key, revisions_key or f"{key}:rev"],
        args=[now, now - keep_seconds, len(item_keys), *item_keys, *pairs],
    )
