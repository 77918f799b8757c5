"""Per-feed fetch state in Redis: validators, body digest, failures, last outcome.

Role: remember between polls (and across poller restarts) what a conditional GET and the
"skip unchanged bodies" check need, and what an operator wants to see about a feed.

Storage: one hash per feed at :meth:`monitor.keys.Keys.feed` with the fields of
:class:`FeedState` (``etag``, ``last_modified``, ``digest``, ``failures``,
``last_status``, ``last_error``, ``last_success``, ``last_polled``, ``next_poll``;
times are unix seconds). A field that is absent means "unknown"/"none".

Invariants:

- Validators (``etag``, ``last_modified``) and the body ``digest`` are written only by
  :func:`record_success`, which the poller calls after the new items are enqueued and
  marked seen. A crash before that leaves the old validators, so the next poll fetches
  and filters the body again instead of getting a 304 for items never enqueued.
- A failure never touches the validators or the digest: a malformed body is re-parsed
  (with backoff) rather than mistaken for "unchanged".
- ``failures`` counts consecutive failures; a success resets it to 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

_STRING_FIELDS = ("etag", "last_modified", "digest", "last_error")
_FLOAT_FIELDS = ("last_success", "last_polled", "next_poll")


@dataclass(frozen=True, slots=True)
class FeedState:
    etag: str | None = None
    last_modified: str | None = None
    digest: str | None = None
    failures: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_success: float | None = None
    last_polled: float | None = None
    next_poll: float | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> FeedState:
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }

        def _float(name: str) -> float | None:
            return float(data[name]) if data.get(name) else None

        return cls(
            etag=data.get("etag") or None,
            last_modified=data.get("last_modified") or None,
            digest=data.get("digest") or None,
            failures=int(data.get("failures") or 0),
            last_status=int(data["last_status"]) if data.get("last_status") else None,
            last_error=data.get("last_error") or None,
            last_success=_float("last_success"),
            last_polled=_float("last_polled"),
            next_poll=_float("next_poll"),
        )


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def load_state(client: aioredis.Redis, key: str) -> FeedState:
    raw = await client.hgetall(key)
    return FeedState.from_hash(raw)


async def record_success(
    client: aioredis.Redis,
    key: str,
    *,
    status: int,
    now: float,
    next_poll: float,
    validators: tuple[str | None, str | None, str | None] | None = None,
) -> None:
    """Mark a successful poll. ``validators`` = (etag, last_modified, digest) to store,
    ``None`` to keep the stored ones (a 304 or an unchanged body)."""
    fields: dict[FieldT, EncodableT] = {
        "failures": 0,
        "last_status": status,
        "last_success": now,
        "last_polled": now,
        "next_poll": next_poll,
    }
    gone = ["last_error"]
    if validators is not None:
        for name, value in zip(("etag", "last_modified", "digest"), validators, strict=True):
            if value:
                fields[name] = value
            else:
                gone.append(name)  # a stale validator would make the server lie to us
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.hdel(key, *gone)
        await pipe.execute()


async def record_failure(
    client: aioredis.Redis,
    key: str,
    *,
    failures: int,
    reason: str,
    status: int | None,
    now: float,
    next_poll: float,
) -> None:
    """Mark a failed poll; ``failures`` is the new consecutive count (previous + 1)."""
    fields: dict[FieldT, EncodableT] = {
        "failures": failures,
        "last_error": reason,
        "last_polled": now,
        "next_poll": next_poll,
    }
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        if status is None:
            pipe.hdel(key, "last_status")
        else:
            pipe.hset(key, "last_status", status)
        await pipe.execute()
