"""The story index in Redis, shared by every worker (a :class:`~workers.stories.StoryBackend`).

Layout (names in :mod:`monitor.keys`): ``lsh:{band}:{bucket}`` → story id, one string
per band bucket with a TTL of ``window_hours`` (so the index forgets by itself);
``story_of:{item}`` → story id; per story a hash (first seen, first outlet, title),
sorted sets of outlets and items, and a hash of its first items' outlet and
content-word hashes (``outlet NUL packed uint32``) that candidates are verified
against. Story keys live ``window_hours`` after the story was last joined; ``stories``
(story id → first seen, kept ``dedupe_days``) lists them for ``wirewatch stories``.

Round trips per batch: one pipeline to probe (every item's ``story_of`` and buckets,
one ``MGET`` per item), one to fetch candidates (only when there are any), one of Lua
scripts to commit; a commit refused because another worker created a story in the
item's buckets meanwhile costs one more fetch and commit for that item only (items of
one batch see each other's decisions before committing, so they never refuse each
other).

The commit script is the race guard: it checks, atomically, that every bucket of the
item is free or holds a story the decision considered, then writes buckets (``SET`` if
free), the item's story, and the story's records — or returns the stories it must
consider first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from monitor.items import Item
from monitor.keys import Keys
from workers.model import StoryView
from workers.shingles import pack, unpack
from workers.stories import MEMBERS_MAX, Candidate, Claim, Member, Probe, Retry, outlet_of

__all__ = ["RedisBackend", "StoryRecord", "recent_stories", "story_records"]


@dataclass(frozen=True, slots=True)
class StoryRecord:
    """A story as ``wirewatch stories`` shows it."""

    view: StoryView
    title: str
    first_item: str

    def to_json(self) -> dict[str, Any]:
        return {**self.view.to_json(), "title": self.title, "first_item": self.first_item}


# KEYS: story_of, story, outlets, items, members, the stories index, bucket keys...
# ARGV: item key, story id, story ttl, now, outlet, packed hashes, known ids, replaceable
#       ids (both space-separated), title, members max, story_of ttl
_COMMIT = """
local prior = redis.call('GET', KEYS[1])
if prior and prior ~= ARGV[2] then return {'moved', prior} end
if not prior then
  local known, replace, holders, unknown = {}, {}, {}, {'retry'}
  for w in string.gmatch(ARGV[7], '%S+') do known[w] = true end
  for w in string.gmatch(ARGV[8], '%S+') do replace[w] = true end
  for i = 7, #KEYS do
    local v = redis.call('GET', KEYS[i])
    holders[i] = v
    if v and v ~= ARGV[2] and not known[v] and not known['*'] then
      table.insert(unknown, v)
    end
  end
  if #unknown > 1 then return unknown end
  for i = 7, #KEYS do
    local v = holders[i]
    if (not v) or replace[v] then redis.call('SET', KEYS[i], ARGV[2], 'EX', ARGV[3]) end
  end
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[11])
  if redis.call('HSETNX', KEYS[2], 'first_seen', ARGV[4]) == 1 then
    redis.call('HSET', KEYS[2], 'first_outlet', ARGV[5], 'title', ARGV[9], 'first_item', ARGV[1])
    redis.call('ZADD', KEYS[6], ARGV[4], ARGV[2])
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[11]))
  end
  redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[4], 'NX', ARGV[4], ARGV[1])
  if redis.call('HLEN', KEYS[5]) < tonumber(ARGV[10]) then
    redis.call('HSETNX', KEYS[5], ARGV[1], ARGV[6])
  end
  for i = 2, 5 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
end
local first = redis.call('HGET', KEYS[2], 'first_seen') or ARGV[4]
local outlets = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
local first_outlet = redis.call('HGET', KEYS[2], 'first_outlet') or ARGV[5]
return {'ok', first, redis.call('ZCARD', KEYS[4]), outlets, first_outlet}
"""

# KEYS: story, outlets, items, story_of of the copy. ARGV: outlet, now, item key, ttl, story id.
_COPY = """
local first = redis.call('HGET', KEYS[1], 'first_seen')
if not first then return false end
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[3])
redis.call('SET', KEYS[4], ARGV[5], 'NX', 'EX', ARGV[4])
local outlets = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local first_outlet = redis.call('HGET', KEYS[1], 'first_outlet') or ARGV[1]
return {'ok', first, redis.call('ZCARD', KEYS[3]), outlets, first_outlet}
"""


def _member(raw: bytes) -> Member:
    """``outlet NUL packed hashes`` (the value of a ``story:{id}:members`` field)."""
    outlet, _, packed = raw.partition(b"\x00")
    return Member(outlet.decode(), frozenset(unpack(packed)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_outlet_first(
    outlets: Sequence[tuple[str, float]], first: str
) -> tuple[tuple[str, float], ...]:
    """Outlets by time; of those seen at the same moment, the story's first outlet first."""
    return tuple(sorted(outlets, key=lambda pair: (pair[1], pair[0] != first)))


def _view(story_id: str, reply: list[Any]) -> StoryView:
    _, first, count, flat, first_outlet = reply
    outlets = [(_text(flat[i]), float(_text(flat[i + 1]))) for i in range(0, len(flat), 2)]
    ordered = _first_outlet_first(outlets, _text(first_outlet))
    return StoryView(story_id, float(_text(first)), ordered, int(count))


def _eval(pipe: redis.client.Pipeline, script: str, keys: list[str], args: list[Any]) -> None:
    """EVAL in a pipeline: the script's text travels each time, but redis-py's ``Script``
    in a pipeline asks ``SCRIPT EXISTS`` first, a round trip of its own per pipeline."""
    pipe.eval(script, len(keys), *keys, *args)


class RedisBackend:
    """The shared story index; ``item_ttl_s`` is how long ``story_of`` is kept."""

    def __init__(self, connection: redis.Redis, keys: Keys, item_ttl_s: int) -> None:
        self.connection = connection
        self.keys = keys
        self.item_ttl_s = item_ttl_s

    def _bucket_keys(self, buckets: Sequence[str]) -> list[str]:
        return [self.keys.lsh_band(band, bucket) for band, bucket in enumerate(buckets)]

    def probe(self, entries: Sequence[tuple[str, Sequence[str]]]) -> list[Probe]:
        pipe = self.connection.pipeline(transaction=False)
        for key, buckets in entries:
            pipe.mget([self.keys.story_of(key), *self._bucket_keys(buckets)])
        probes = []
        for values in pipe.execute():
            prior, *held = values
            candidates = frozenset(_text(v) for v in held if v is not None)
            probes.append(Probe(_text(prior) if prior is not None else None, candidates))
        return probes

    def fetch(self, story_ids: Sequence[str]) -> dict[str, Candidate]:
        pipe = self.connection.pipeline(transaction=False)
        for story in story_ids:
            pipe.hget(self.keys.story(story), "first_seen")
            pipe.hvals(self.keys.story_members(story))
        replies = pipe.execute()
        found = {}
        for index, story in enumerate(story_ids):
            first, members = replies[2 * index], replies[2 * index + 1]
            if first is not None:
                packed = tuple(_member(raw) for raw in members)
                found[story] = Candidate(story, float(_text(first)), packed)
        return found

    def commit(self, claims: Sequence[tuple[Claim, float]]) -> list[StoryView | Retry]:
        pipe = self.connection.pipeline(transaction=False)
        k = self.keys
        for claim, ttl in claims:
            story = claim.story_id
            _eval(
                pipe,
                _COMMIT,
                [
                    k.story_of(claim.item_key),
                    k.story(story),
                    k.story_outlets(story),
                    k.story_items(story),
                    k.story_members(story),
                    k.stories(),
                    *self._bucket_keys(claim.buckets),
                ],
                [
                    claim.item_key,
                    story,
                    max(1, int(ttl)),
                    repr(claim.now),
                    claim.outlet,
                    claim.outlet.encode() + b"\x00" + pack(claim.hashes),
                    " ".join(sorted(claim.known)),
                    " ".join(sorted(claim.replace)),
                    claim.title,
                    MEMBERS_MAX,
                    self.item_ttl_s,
                ],
            )
        out: list[StoryView | Retry] = []
        for (claim, _), reply in zip(claims, pipe.execute(), strict=True):
            status = _text(reply[0])
            if status == "ok":
                out.append(_view(claim.story_id, reply))
            elif status == "moved":
                out.append(Retry(prior=_text(reply[1])))
            else:
                out.append(Retry(frozenset(_text(v) for v in reply[1:])))
        return out

    def add_copies(self, copies: Sequence[tuple[str, Item, float]]) -> list[StoryView | None]:
        pipe = self.connection.pipeline(transaction=False)
        k = self.keys
        for story, item, now in copies:
            _eval(
                pipe,
                _COPY,
                [
                    k.story(story),
                    k.story_outlets(story),
                    k.story_items(story),
                    k.story_of(item.key),
                ],
                [outlet_of(item), repr(now), item.key, self.item_ttl_s, story],
            )
        return [
            _view(story, reply) if reply else None
            for (story, _, _), reply in zip(copies, pipe.execute(), strict=True)
        ]


def story_records(
    connection: redis.Redis, keys: Keys, story_ids: Sequence[str]
) -> dict[str, StoryRecord]:
    """The stories among ``story_ids`` whose records are still kept. One round trip."""
    pipe = connection.pipeline(transaction=False)
    for story in story_ids:
        pipe.hgetall(keys.story(story))
        pipe.zrange(keys.story_outlets(story), 0, -1, withscores=True)
        pipe.zcard(keys.story_items(story))
    replies = pipe.execute()
    out = {}
    for index, story in enumerate(story_ids):
        fields, outlets, count = replies[3 * index : 3 * index + 3]
        if not fields:
            continue
        info = {_text(k): _text(v) for k, v in fields.items()}
        view = StoryView(
            story,
            float(info.get("first_seen", 0)),
            _first_outlet_first(
                [(_text(name), float(at)) for name, at in outlets], info.get("first_outlet", "")
            ),
            int(count),
        )
        out[story] = StoryRecord(view, info.get("title", ""), info.get("first_item", ""))
    return out


def recent_stories(connection: redis.Redis, keys: Keys, limit: int) -> list[StoryRecord]:
    """The newest stories first (those whose records are still kept)."""
    ids = [_text(s) for s in connection.zrevrange(keys.stories(), 0, max(0, limit - 1))]
    found = story_records(connection, keys, ids)
    return [found[story] for story in ids if story in found]
