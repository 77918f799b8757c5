"""The first-seen filter: which item keys of a feed have never left the poller before.

Role: make an unchanged (or partly changed) feed enqueue only what is new.

Storage: one sorted set per feed at :meth:`monitor.keys.Keys.seen`; members are item
keys, scores the unix time the key was last *seen in the feed*.

Protocol (the order is what makes "nothing is lost" hold):

1. :func:`unseen` — which of the keys in the body are not in the set (``ZMSCORE``,
   read-only);
2. the poller enqueues those items;
3. :func:`mark_seen` — all keys of the body are written with score ``now`` and keys not
   seen for ``keep_seconds`` are trimmed, in one transaction.

A crash between 2 and 3 re-enqueues the same items on the next poll; the workers'
dedupe absorbs that. The reverse order could lose items, so it is not offered.

Why "last seen" and not "first seen" as the score: a key is trimmed only after it has
been absent from the feed for ``keep_seconds`` (``poller.seen_days``). An evergreen
entry that stays in a feed for months is therefore never trimmed and re-enqueued.
Trimming runs only after a changed body was parsed, so a feed that answers 304 for
longer than ``seen_days`` keeps its set until it changes, and then refreshes it first.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis


async def unseen(client: aioredis.Redis, key: str, item_keys: Sequence[str]) -> list[str]:
    """The subset of ``item_keys`` never marked seen, in the given order."""
    if not item_keys:
        return []
    scores = await client.zmscore(key, list(item_keys))
    return [k for k, score in zip(item_keys, scores, strict=True) if score is None]


async def mark_seen(
    client: aioredis.Redis,
    key: str,
    item_keys: Sequence[str],
    *,
    now: float,
    keep_seconds: float,
) -> None:
    """Record ``item_keys`` as seen at ``now``; forget keys unseen for ``keep_seconds``."""
    async with client.pipeline(transaction=True) as pipe:
        if item_keys:
            pipe.zadd(key, dict.fromkeys(item_keys, now))
        pipe.zremrangebyscore(key, "-inf", f"({now - keep_seconds}")
        await pipe.execute()
