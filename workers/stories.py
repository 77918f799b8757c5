"""Stories: near-duplicate items from any feed grouped into one story, in a time window.

Role: :class:`StoryIndex` assigns every new item to a story: the item's content-word
hashes (:mod:`workers.shingles`) give MinHash LSH buckets; the stories found in those
buckets are *candidates*; a candidate first seen within ``window_hours`` whose items
are similar enough (exact Jaccard of content words ≥ ``threshold`` with any of its
kept members) is joined, the most similar first; otherwise the item starts a story of
its own, with an id derived from its key.

The index keeps its state in a :class:`StoryBackend`: Redis (:mod:`workers.story_store`,
shared by every worker) or memory (:class:`MemoryBackend`, for offline backtests). Both
run the same algorithm, in three steps per batch: *probe* (the story an item already
joined, and the stories in its buckets), *fetch* candidates, *commit*. A commit is
atomic per item and refuses when a bucket holds a story the decision did not consider
(another worker created it meanwhile): the item is decided again with that story as a
candidate. So two copies processed at once by two workers end in one story.

An *outlet* is the publisher, not the feed: the registered domain of the feed's URL
by the Public Suffix List (``feeds.bbci.co.uk`` → ``bbci.co.uk``, ``abc.net.au`` stays,
each ``*.blogspot.com`` blog is its own outlet; the ``publicsuffixlist`` package ships
the list, so nothing is fetched at run time), so several feeds of one publisher count
once, and an exact copy of a story (same URL or GUID) in another publisher's feed counts
as that publisher. On feed-hosting services
(FeedBurner and the like) the item's URL names the outlet; a ``file:`` feed is its name.

Invariants: an item joins exactly one story and keeps it (a retried batch finds its
story first); a story's first outlet and first-seen time never change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Protocol
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from monitor.items import Item
from monitor.keys import digest
from workers.model import StoryView
from workers.shingles import Bander, shingle_hashes, similarity

__all__ = [
    "MEMBERS_MAX",
    "Assignment",
    "Candidate",
    "Claim",
    "Member",
    "MemoryBackend",
    "Probe",
    "Retry",
    "StoryBackend",
    "StoryIndex",
    "outlet_of",
    "story_id_for",
]

MEMBERS_MAX = 32  # items of a story whose words are kept for verification
_ROUNDS = 5  # decisions per item before it gives up and starts its own story
# Services that host other publishers' feeds: there the item's own URL names the outlet.
_FEED_HOSTS = frozenset(
    {"feedburner.com", "feedblitz.com", "google.com", "rss.app", "fetchrss.com"}
)


def story_id_for(item_key: str) -> str:
    """The id of the story an item starts: stable, so a retried batch finds it again."""
    return digest(f"story\x00{item_key}", 16)


@lru_cache(maxsize=4096)  # feed URLs repeat: parsing one (an IP check that raises) costs ~20 µs
def _registered_domain(url: str) -> str:
    host = (urlsplit(url).hostname or "").rstrip(".")
    if not host:
        return ""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    # None for a bare public suffix or a one-label intranet host: the host names itself.
    return _public_suffixes().privatesuffix(host.lower()) or host.lower()


@cache
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List with its private part (blog and page hosts), read once (~40 ms)."""
    return PublicSuffixList(only_icann=False)


def outlet_of(item: Item) -> str:
    """The publisher whose feed carried ``item`` (see the module docstring)."""
    domain = _registered_domain(item.feed_url)
    if domain in _FEED_HOSTS:
        domain = _registered_domain(item.url) or domain
    return domain or item.feed_name or item.feed_url


@dataclass(frozen=True, slots=True)
class Probe:
    """What the index knows of an item before deciding: its story, stories near it."""

    prior: str | None
    candidates: frozenset[str]


@dataclass(frozen=True, slots=True)
class Member:
    """An item of a story, as kept for verifying candidates: its outlet and words."""

    outlet: str
    hashes: frozenset[int]


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    first_seen: float
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """The decision for one item, for the backend to commit atomically."""

    item_key: str
    story_id: str
    outlet: str
    now: float
    hashes: tuple[int, ...]
    buckets: tuple[str, ...]
    known: frozenset[str]  # stories the decision considered
    replace: frozenset[str]  # considered, but out of the window: their buckets are taken
    title: str


@dataclass(frozen=True, slots=True)
class Retry:
    """A commit refused: stories to consider, or the story the item turned out to be in."""

    candidates: frozenset[str] = frozenset()
    prior: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """The story an item is in after the batch (``created``: the item started it)."""

    story: StoryView
    created: bool
    similarity: float = 1.0


class StoryBackend(Protocol):
    """Where stories live. Each method is one round trip for a whole batch."""

    def probe(self, entries: Sequence[tuple[str, Sequence[str]]]) -> list[Probe]:
        """For each ``(item key, buckets)``: the item's story, and the buckets' stories."""
        ...

    def fetch(self, story_ids: Sequence[str]) -> dict[str, Candidate]:
        """The stories that still exist among ``story_ids``."""
        ...

    def commit(self, claims: Sequence[tuple[Claim, float]]) -> list[StoryView | Retry]:
        """Apply ``(claim, ttl)`` in order; per claim the story, or why to decide again."""
        ...

    def add_copies(self, copies: Sequence[tuple[str, Item, float]]) -> list[StoryView | None]:
        """Exact copies ``(story id, item, now)`` from other feeds: their outlets count."""
        ...


class StoryIndex:
    """Assigns items to stories (see the module docstring); one backend, one config."""

    def __init__(
        self, backend: StoryBackend, window_s: float, threshold: float, bander: Bander | None = None
    ) -> None:
        self.backend = backend
        self.window_s = window_s
        self.threshold = threshold
        self.bander = bander or Bander()

    def assign(
        self, items: Sequence[Item], now: float | Mapping[str, float]
    ) -> dict[str, Assignment]:
        """The story of each item (by key); ``now`` is one time, or a time per item key."""
        times = now if isinstance(now, Mapping) else {item.key: now for item in items}
        hashes = {item.key: shingle_hashes(item.title, item.summary) for item in items}
        buckets = {key: tuple(self.bander.buckets(h)) for key, h in hashes.items()}
        probes = self.backend.probe([(item.key, buckets[item.key]) for item in items])
        known = {item.key: set(p.candidates) for item, p in zip(items, probes, strict=True)}
        prior = {item.key: p.prior for item, p in zip(items, probes, strict=True)}
        fetched: dict[str, Candidate | None] = {}
        done: dict[str, Assignment] = {}
        pending = list(items)
        for round_ in range(_ROUNDS):
            wanted = sorted({s for i in pending for s in known[i.key]} - fetched.keys())
            found = self.backend.fetch(wanted) if wanted else {}
            fetched.update({story: found.get(story) for story in wanted})
            batch = _BatchClaims()
            claims, scores = [], []
            for item in pending:
                # Stories claimed earlier in this batch are candidates too: the commits
                # run in order, so this item's commit would otherwise be refused.
                near = batch.near(buckets[item.key])
                known[item.key] |= near.keys()
                view = {**fetched, **near}
                last = round_ == _ROUNDS - 1
                claim, score = self._decide(
                    item, times[item.key], hashes, buckets, known, prior, view, last
                )
                batch.add(claim)
                claims.append((claim, self.window_s))
                scores.append(score)
            results = self.backend.commit(claims)
            retry = []
            for score, item, result in zip(scores, pending, results, strict=True):
                if isinstance(result, StoryView):
                    created = result.id == story_id_for(item.key) and prior[item.key] is None
                    done[item.key] = Assignment(result, created, score)
                else:
                    known[item.key] |= result.candidates
                    prior[item.key] = result.prior or prior[item.key]
                    retry.append(item)
            pending = retry
            if not pending:
                break
        return done

    def _decide(
        self,
        item: Item,
        now: float,
        hashes: Mapping[str, tuple[int, ...]],
        buckets: Mapping[str, tuple[str, ...]],
        known: Mapping[str, set[str]],
        prior: Mapping[str, str | None],
        fetched: Mapping[str, Candidate | None],
        last: bool,
    ) -> tuple[Claim, float]:
        mine = frozenset(hashes[item.key])
        outlet = outlet_of(item)
        best: tuple[float, float, str] | None = None  # (similarity, -first_seen, id)
        stale: set[str] = set()
        for story in known[item.key]:
            candidate = fetched.get(story)
            if candidate is None:
                continue
            if candidate.first_seen < now - self.window_s:
                stale.add(story)
                continue
            score = max(
                (
                    similarity(mine, m.hashes, same_source=m.outlet == outlet)
                    for m in candidate.members
                ),
                default=0.0,
            )
            if score >= self.threshold and (
                best is None or (score, -candidate.first_seen, story) > best
            ):
                best = (score, -candidate.first_seen, story)
        chosen = prior[item.key] or (best[2] if best else story_id_for(item.key))
        considered = frozenset(known[item.key]) if not last else frozenset({"*"})
        claim = Claim(
            item_key=item.key,
            story_id=chosen,
            outlet=outlet,
            now=now,
            hashes=hashes[item.key],
            buckets=buckets[item.key],
            known=considered,
            replace=frozenset(stale),
            title=item.title,
        )
        return claim, best[0] if best and chosen == best[2] else 1.0


class _BatchClaims:
    """The claims decided so far in one round of a batch, as candidates for the rest."""

    def __init__(self) -> None:
        self.holder: dict[str, str] = {}  # bucket → story
        self.stories: dict[str, Candidate] = {}

    def near(self, buckets: Sequence[str]) -> dict[str, Candidate | None]:
        ids = {self.holder[b] for b in buckets if b in self.holder}
        return {story: self.stories[story] for story in ids}

    def add(self, claim: Claim) -> None:
        for bucket in claim.buckets:
            self.holder.setdefault(bucket, claim.story_id)
        known = self.stories.get(claim.story_id)
        mine = Member(claim.outlet, frozenset(claim.hashes))
        members = (*known.members, mine) if known else (mine,)
        first = min(known.first_seen, claim.now) if known else claim.now
        self.stories[claim.story_id] = Candidate(claim.story_id, first, members)


@dataclass
class _Story:
    first_seen: float
    first_outlet: str
    title: str
    expires: float
    outlets: dict[str, float] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)

    def view(self, story_id: str) -> StoryView:
        outlets = tuple(sorted(self.outlets.items(), key=lambda pair: pair[1]))  # stable
        return StoryView(story_id, self.first_seen, outlets, len(self.items))


class MemoryBackend:
    """The story index in one process's memory: same algorithm, for offline backtests.

    Expiry follows the items' own times (``Claim.now``), so a file of old items is
    grouped as it would have been live.
    """

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[str, float]] = {}  # bucket → (story, expires)
        self.story_of: dict[str, str] = {}
        self.stories: dict[str, _Story] = {}
        self._now = 0.0

    def probe(self, entries: Sequence[tuple[str, Sequence[str]]]) -> list[Probe]:
        out = []
        for key, buckets in entries:
            found = {self.buckets[b][0] for b in buckets if self._live_bucket(b)}
            out.append(Probe(self.story_of.get(key), frozenset(found)))
        return out

    def fetch(self, story_ids: Sequence[str]) -> dict[str, Candidate]:
        return {
            s: Candidate(
                s,
                self.stories[s].first_seen,
                tuple(self.stories[s].members.values()),
            )
            for s in story_ids
            if s in self.stories and self.stories[s].expires > self._now
        }

    def commit(self, claims: Sequence[tuple[Claim, float]]) -> list[StoryView | Retry]:
        return [self._commit(claim, ttl) for claim, ttl in claims]

    def _commit(self, claim: Claim, ttl: float) -> StoryView | Retry:
        self._now = max(self._now, claim.now)
        prior = self.story_of.get(claim.item_key)
        if prior is not None and prior != claim.story_id:
            return Retry(prior=prior)
        if prior is not None and prior in self.stories:
            return self.stories[prior].view(prior)
        held = {self.buckets[b][0] for b in claim.buckets if self._live_bucket(b)}
        unknown = held - claim.known - {claim.story_id}
        if prior is None and unknown and "*" not in claim.known:
            return Retry(frozenset(unknown))
        for bucket in claim.buckets:
            if not self._live_bucket(bucket) or self.buckets[bucket][0] in claim.replace:
                self.buckets[bucket] = (claim.story_id, claim.now + ttl)
        story = self.stories.get(claim.story_id)
        if story is None or story.expires <= claim.now:
            story = _Story(claim.now, claim.outlet, claim.title, 0.0)
            self.stories[claim.story_id] = story
        story.expires = claim.now + ttl
        story.outlets.setdefault(claim.outlet, claim.now)
        story.items.setdefault(claim.item_key, claim.now)
        if len(story.members) < MEMBERS_MAX:
            story.members.setdefault(claim.item_key, Member(claim.outlet, frozenset(claim.hashes)))
        self.story_of[claim.item_key] = claim.story_id
        return story.view(claim.story_id)

    def add_copies(self, copies: Sequence[tuple[str, Item, float]]) -> list[StoryView | None]:
        out: list[StoryView | None] = []
        for story_id, item, now in copies:
            story = self.stories.get(story_id)
            if story is None:
                out.append(None)
                continue
            story.outlets.setdefault(outlet_of(item), now)
            story.items.setdefault(item.key, now)
            self.story_of.setdefault(item.key, story_id)
            out.append(story.view(story_id))
        return out

    def _live_bucket(self, bucket: str) -> bool:
        held = self.buckets.get(bucket)
        return held is not None and held[1] > self._now
