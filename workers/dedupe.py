"""Exact deduplication across all feeds, atomic in Redis.

An item is a duplicate when another item already claimed, within ``workers.dedupe_days``:

* its canonical URL (tracking parameters are gone by now, so the URL is global);
* its GUID — across all feeds only when the GUID is globally unique by construction (an
  absolute URL, ``urn:`` or ``tag:``); a bare ``12345`` or slug is only unique within
  its own feed, so it is claimed per feed;
* the hash of its normalised title and summary — only when there is a summary and
  enough text, so short recurring headlines ("Live updates", "Corrections") with no
  summary are not taken for one another.

The claim of all keys is one Lua script, so two workers racing on copies of the same
story cannot both win. A key that holds the item's *own* key counts as not a duplicate,
so a batch retried after a crashed worker is processed again instead of being dropped
(the alert stage has its own idempotency key, so nothing is sent twice); when a batch
fails for good, :func:`release` gives its claims back, so copies of its stories on
other feeds are not dropped as duplicates of an item that never made it.

Near-duplicates (the same wire story re-edited by other outlets) are the next stage,
:mod:`workers.stories`. :class:`MemoryDedupe` applies the same claims in memory, for
offline backtests (no window: a file is short).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis

from monitor.items import Item
from monitor.keys import Keys, digest

# KEYS: the claim keys. ARGV[1]: the item key, ARGV[2]: TTL in seconds.
# Returns "" when the item is new (or already ours), else the key of the first owner.
_CLAIM = """
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner and owner ~= ARGV[1] then
    return owner
  end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
end
return ''
"""

# Delete each key only if this item still owns it.
_RELEASE = """
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""

_SPACE = re.compile(r"\s+")
_GLOBAL_ID = re.compile(r"^(https?://\S+|urn:\S+|tag:\S+)$", re.IGNORECASE)
MIN_CONTENT_CHARS = 60


@dataclass(frozen=True, slots=True)
class DedupeResult:
    new: list[Item]
    duplicates: list[tuple[Item, str]]  # (item, key of the item it duplicates)


def content_text(item: Item) -> str:
    """The visible text, insensitive to case and white space."""
    return _SPACE.sub(" ", f"{item.title}\n{item.summary}".casefold()).strip()


def claim_keys(keys: Keys, item: Item) -> list[str]:
    claims = [keys.dedupe("item", digest(item.key, 32))]
    text = content_text(item)
    if item.summary.strip() and len(text) >= MIN_CONTENT_CHARS:
        claims.append(keys.dedupe("content", digest(text, 32)))
    if item.url:
        claims.append(keys.dedupe("url", digest(item.url, 32)))
    if item.guid:
        scope = "" if _GLOBAL_ID.match(item.guid.strip()) else f"{item.feed_url}\x00"
        claims.append(keys.dedupe("guid", digest(scope + item.guid.strip(), 32)))
    return claims


def dedupe(connection: redis.Redis, keys: Keys, items: list[Item], ttl_s: int) -> DedupeResult:
    """Split ``items`` into new ones and duplicates, claiming the new ones. One round trip."""
    unique = list({item.key: item for item in items}.values())  # a feed listing an entry twice
    pipe = connection.pipeline(transaction=False)
    for item in unique:
        # EVAL, not a registered Script: in a pipeline, that asks SCRIPT EXISTS first (a
        # round trip of its own); Redis caches the script by its digest either way.
        claims = claim_keys(keys, item)
        pipe.eval(_CLAIM, len(claims), *claims, item.key, ttl_s)
    owners = pipe.execute()
    result = DedupeResult(new=[], duplicates=[])
    for item, owner in zip(unique, owners, strict=True):
        owner_key = owner.decode() if isinstance(owner, bytes) else str(owner)
        if owner_key:
            result.duplicates.append((item, owner_key))
        else:
            result.new.append(item)
    # Two copies inside one batch: the script saw the first claim already, so the
    # second copy comes back as a duplicate of the first. Nothing more to do.
    return result


def release(connection: redis.Redis, keys: Keys, items: list[Item]) -> int:
    """Give back the claims these items hold (after they failed for good)."""
    script = connection.register_script(_RELEASE)
    pipe = connection.pipeline(transaction=False)
    for item in items:
        script(keys=claim_keys(keys, item), args=[item.key], client=pipe)
    return sum(int(count) for count in pipe.execute())


class MemoryDedupe:
    """The same claims as :func:`dedupe`, in a dict: for offline backtests."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}
        self._keys = Keys("")

    def dedupe(self, items: list[Item]) -> DedupeResult:
        result = DedupeResult(new=[], duplicates=[])
        for item in {item.key: item for item in items}.values():
            claims = claim_keys(self._keys, item)
            owner = next(
                (self.owners[c] for c in claims if self.owners.get(c, item.key) != item.key), ""
            )
            if owner:
                result.duplicates.append((item, owner))
                continue
            self.owners.update(dict.fromkeys(claims, item.key))
            result.new.append(item)
        return result
