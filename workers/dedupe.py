"""Exact deduplication across all feeds, atomic in Redis.

An item is a duplicate when another item already claimed its GUID, its canonical URL
or the hash of its normalised title and summary, within ``workers.dedupe_days``. The
claim of all three keys is one Lua script, so two workers racing on copies of the
same story cannot both win.

Re-processing is safe: a key that holds the item's *own* key counts as not a duplicate,
so a batch retried after a crashed worker is processed again instead of being dropped
(the alert stage has its own idempotency key, so nothing is sent twice).

Near-duplicates (the same wire story re-edited by other outlets) are a later stage.
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

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class DedupeResult:
    new: list[Item]
    duplicates: list[tuple[Item, str]]  # (item, key of the item it duplicates)


def content_hash(item: Item) -> str:
    """Hash of the visible text, insensitive to case and white space."""
    text = _SPACE.sub(" ", f"{item.title}\n{item.summary}".casefold()).strip()
    return digest(text, 32)


def claim_keys(keys: Keys, item: Item) -> list[str]:
    claims = [keys.dedupe("content", content_hash(item))]
    if item.url:
        claims.append(keys.dedupe("url", digest(item.url, 32)))
    if item.guid:
        claims.append(keys.dedupe("guid", digest(item.guid, 32)))
    return claims


def dedupe(connection: redis.Redis, keys: Keys, items: list[Item], ttl_s: int) -> DedupeResult:
    """Split ``items`` into new ones and duplicates, claiming the new ones. One round trip."""
    unique = list({item.key: item for item in items}.values())  # a feed listing an entry twice
    script = connection.register_script(_CLAIM)
    pipe = connection.pipeline(transaction=False)
    for item in unique:
        script(keys=claim_keys(keys, item), args=[item.key, ttl_s], client=pipe)
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
