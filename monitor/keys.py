"""Every Redis key wirewatch writes, in one place.

All wirewatch keys start with the configured prefix (``redis.prefix``, default
``wirewatch:``) so wirewatch can share a Redis server with other applications.

rq keeps its own bookkeeping under ``rq:`` (its namespace is hard-coded across rq);
our queue names carry the prefix (``wirewatch:items``, ``wirewatch:alerts``), so two
installations with different prefixes never take each other's jobs.

| key (after the prefix) | type | what | lifetime |
| --- | --- | --- | --- |
| ``feed:{feed_id}`` | hash | fetch state: validators, failures, last error | kept |
| ``seen:{feed_id}`` | zset | item keys first seen on a feed → unix time | ``seen_days`` |
| ``dedupe:{kind}:{digest}`` | string | item key that claimed a GUID/URL/text | ``dedupe_days`` |
| ``item:{item_key}`` | string | processed item (JSON: item, entities) | ``dedupe_days`` |
| ``alert:{alert_id}`` | string | alert JSON; its existence is the claim | ``alert_days`` |
| ``alert:{alert_id}:queued`` | string | its delivery jobs were enqueued | ``alert_days`` |
| ``delivered:{alert_id}:{channel}`` | string | that channel accepted the alert | ``alert_days`` |
| ``alerts`` | stream | alert history | ``MAXLEN ~ 10000`` |
| ``heartbeat:poller:{name}`` | string | a poller is alive | 60 s |
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def digest(text: str, size: int = 16) -> str:
    """A short, stable hex digest used inside key names and ids."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=max(1, size // 2)).hexdigest()


def feed_id(url: str) -> str:
    return digest(url, 16)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix. Pure: builds strings, talks to nothing."""

    prefix: str = "wirewatch:"

    def feed(self, url: str) -> str:
        return f"{self.prefix}feed:{feed_id(url)}"

    def seen(self, url: str) -> str:
        return f"{self.prefix}seen:{feed_id(url)}"

    def dedupe(self, kind: str, value_digest: str) -> str:
        return f"{self.prefix}dedupe:{kind}:{value_digest}"

    def item(self, item_key: str) -> str:
        return f"{self.prefix}item:{item_key}"

    def alert(self, alert_id: str) -> str:
        return f"{self.prefix}alert:{alert_id}"

    def delivered(self, alert_id: str, channel: str) -> str:
        return f"{self.prefix}delivered:{alert_id}:{channel}"

    def alert_history(self) -> str:
        return f"{self.prefix}alerts"

    def poller_heartbeat(self, name: str) -> str:
        return f"{self.prefix}heartbeat:poller:{name}"

    @property
    def items_queue(self) -> str:
        return f"{self.prefix}items"

    @property
    def alerts_queue(self) -> str:
        return f"{self.prefix}alerts"
