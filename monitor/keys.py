"""Every Redis key wirewatch writes, in one place.

All wirewatch keys start with the configured prefix (``redis.prefix``, default
``wirewatch:``) so wirewatch can share a Redis server with other applications.

rq keeps its own bookkeeping under ``rq:`` (its namespace is hard-coded across rq);
our queue names carry the prefix (``wirewatch:items``, ``wirewatch:alerts``), so two
installations with different prefixes never take each other's jobs.

| key (after the prefix) | type | what | lifetime |
| --- | --- | --- | --- |
| ``feed:{feed_id}`` | hash | fetch state, learned interval, health | kept |
| ``schedule`` | zset | feed id → unix time it is due (or its poll lease ends) | kept |
| ``schedule:generation`` | string | the newest config's time that synced the schedule | kept |
| ``leases`` | hash | feed id → "{token} {poller}" while a poller polls it | the poll |
| ``feedconf:{feed_id}`` | hash | the feed's config (JSON), synced by pollers | configured |
| ``seen:{feed_id}`` | zset | item keys first seen on a feed → unix time | ``seen_days`` |
| ``seen:{feed_id}:rev`` | hash | item key → "{entry digest}:{text digest}" | as ``seen`` |
| ``dedupe:{kind}:{digest}`` | string | item key that claimed a GUID/URL/text | ``dedupe_days`` |
| ``item:{item_key}`` | string | processed item (JSON: item, entities, story) | ``dedupe_days`` |
| ``items:recent`` | zset | item key → unix time it was processed (backtests) | ``dedupe_days`` |
| ``story:{story_id}`` | hash | first seen, first outlet, title, first item | ``window_hours`` |
| ``story:{story_id}:outlets`` | zset | outlet → unix time it first carried the story | as story |
| ``story:{story_id}:items`` | zset | item key → unix time it joined | as the story |
| ``lsh:{band}:{hash}`` | string | MinHash LSH band bucket → story id | ``window_hours`` |
| ``story_of:{item_key}`` | string | the story an item joined | ``dedupe_days`` |
| ``story:{story_id}:members`` | hash | item key → content-word hashes (first 32) | as the story |
| ``story:{story_id}:entities`` | set | canonical entity names the story has named | as the story |
| ``story:{story_id}:alerts`` | hash | rule id → its first alert on it (JSON) | as the story |
| ``stories`` | zset | story id → unix time first seen (``wirewatch stories``) | ``dedupe_days`` |
| ``alert:{alert_id}`` | string | alert JSON; its existence is the claim | ``alert_days`` |
| ``alert:{alert_id}:queued`` | string | it was routed (jobs, outbox) | ``alert_days`` |
| ``delivered:{alert_id}:{channel}`` | string | that channel accepted the alert | ``alert_days`` |
| ``sending:{target}:{channel}`` | string | a delivery in progress (lock) | job timeout |
| ``outbox`` | zset | "{alert} {channel}" a batch sends → when a job takes over | until sent |
| ``attempts:{target}:{channel}`` | list | failed attempts of a delivery | ``dead_days`` |
| ``dead`` | hash | ``{target}:{channel}`` → dead letter JSON | until replayed |
| ``muted:{story}`` | string | no alerts for this story | as muted |
| ``rate:{rule}`` | zset | alerts admitted in the rate window | one window |
| ``digest:{channel}`` | zset | alert ids held for the next digest | until sent |
| ``digest:{channel}:batch`` | zset | the digest being sent | until sent |
| ``digest:{channel}:flush`` | string | a flush is scheduled (at) | wait + 60 s |
| ``alerts`` | stream | alert history (raised, delivered, dead) | ``history_max`` |
| ``heartbeat:poller:{name}`` | string | a poller is alive (JSON: at, in flight) | 10 s |
| ``websub:{feed_id}`` | hash | a WebSub subscription: hub, topic, secret, state | until dropped |
| ``websub:due`` | zset | feed id → when its next (un)subscribe request to the hub is due | kept |
| ``metrics:{name}`` | hash | a metric (:mod:`monitor.metrics`): labels → count, sum | kept |
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
        return self.feed_by_id(feed_id(url))

    def feed_by_id(self, fid: str) -> str:
        """The state hash of the feed with id ``fid`` (see :func:`feed_id`)."""
        return f"{self.prefix}feed:{fid}"

    def schedule(self) -> str:
        """The shared schedule: feed id → due time (a claimed feed: its lease's end)."""
        return f"{self.prefix}schedule"

    def leases(self) -> str:
        """Who holds each claimed feed: feed id → ``"{token} {poller name}"``."""
        return f"{self.prefix}leases"

    def feed_conf(self, fid: str) -> str:
        """The config of the feed with id ``fid`` (see :func:`feed_id`), as last synced."""
        return f"{self.prefix}feedconf:{fid}"

    def seen(self, url: str) -> str:
        return f"{self.prefix}seen:{feed_id(url)}"

    def seen_revisions(self, url: str) -> str:
        """Item key → what its entry last looked like, to notice an edited item."""
        return f"{self.prefix}seen:{feed_id(url)}:rev"

    def dedupe(self, kind: str, value_digest: str) -> str:
        return f"{self.prefix}dedupe:{kind}:{value_digest}"

    def item(self, item_key: str) -> str:
        return f"{self.prefix}item:{item_key}"

    def items_recent(self) -> str:
        """Processed item keys by processing time, for ``wirewatch backtest --since``."""
        return f"{self.prefix}items:recent"

    def story(self, story_id: str) -> str:
        """A story's hash; ``:outlets`` and ``:items`` sorted sets beside it."""
        return f"{self.prefix}story:{story_id}"

    def story_outlets(self, story_id: str) -> str:
        return f"{self.prefix}story:{story_id}:outlets"

    def story_items(self, story_id: str) -> str:
        return f"{self.prefix}story:{story_id}:items"

    def lsh_band(self, band: int, bucket: str) -> str:
        """One MinHash LSH bucket: the story whose signature hashed there in that band."""
        return f"{self.prefix}lsh:{band}:{bucket}"

    def story_of(self, item_key: str) -> str:
        return f"{self.prefix}story_of:{item_key}"

    def story_members(self, story_id: str) -> str:
        """Item key → packed content-word hashes of the story's first items."""
        return f"{self.prefix}story:{story_id}:members"

    def story_entities(self, story_id: str) -> str:
        return f"{self.prefix}story:{story_id}:entities"

    def stories(self) -> str:
        """Story ids by first-seen time, newest last (``wirewatch stories``)."""
        return f"{self.prefix}stories"

    def story_alerts(self, story_id: str) -> str:
        """Rule id → the rule's first alert on the story (follow-ups thread to it)."""
        return f"{self.prefix}story:{story_id}:alerts"

    def alert(self, alert_id: str) -> str:
        return f"{self.prefix}alert:{alert_id}"

    def delivered(self, alert_id: str, channel: str) -> str:
        return f"{self.prefix}delivered:{alert_id}:{channel}"

    def sending(self, target: str, channel: str) -> str:
        return f"{self.prefix}sending:{target}:{channel}"

    def outbox(self) -> str:
        return f"{self.prefix}outbox"

    def attempts(self, target: str, channel: str) -> str:
        return f"{self.prefix}attempts:{target}:{channel}"

    def dead(self) -> str:
        return f"{self.prefix}dead"

    def rate(self, rule_id: str) -> str:
        return f"{self.prefix}rate:{rule_id}"

    def digest(self, channel: str) -> str:
        """The pending alerts of a channel's digest; ``:batch`` and ``:flush`` beside it."""
        return f"{self.prefix}digest:{channel}"

    def muted(self, story: str) -> str:
        return f"{self.prefix}muted:{story}"

    def alert_history(self) -> str:
        return f"{self.prefix}alerts"

    def poller_heartbeat(self, name: str) -> str:
        return f"{self.prefix}heartbeat:poller:{name}"

    def websub(self, fid: str) -> str:
        """The WebSub subscription of the feed with id ``fid`` (see :func:`feed_id`)."""
        return f"{self.prefix}websub:{fid}"

    def websub_due(self) -> str:
        """Feed id → when its next request to its hub is due (renewals, retries)."""
        return f"{self.prefix}websub:due"

    def metric(self, name: str) -> str:
        """One metric's hash, shared by every process (see :mod:`monitor.metrics`)."""
        return f"{self.prefix}metrics:{name}"

    @property
    def items_queue(self) -> str:
        return f"{self.prefix}items"

    @property
    def alerts_queue(self) -> str:
        return f"{self.prefix}alerts"
