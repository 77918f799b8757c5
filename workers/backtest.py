"""Backtests: run rules over items already seen (in Redis) or over a file, offline.

* :func:`backtest_recent`: the items the workers processed in the last ``since_s``
  seconds (``items:recent`` and ``item:{key}`` in the service's Redis), each with the
  entities and story the workers gave it, through one rule or all of them. Reads only.
* :func:`backtest_items`: items from a file, in file order, through the whole worker
  pipeline with no Redis: exact dedupe (:class:`~workers.dedupe.MemoryDedupe`), story
  assignment (:class:`~workers.stories.MemoryBackend`: the same algorithm and settings
  as the shared index, with each item's published time as its clock), entities (the
  configured NER) and the rules. Nothing is sent.

Each yields :class:`BacktestRow` values; the CLI formats them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from monitor.config import Config
from monitor.items import Item
from monitor.keys import Keys
from workers.dedupe import MemoryDedupe
from workers.entities import item_text, load_extractor
from workers.match import RuleMatch, RuleSet, compile_rules
from workers.model import Entity, StoryView
from workers.stories import MemoryBackend, StoryIndex
from workers.story_store import story_records

__all__ = ["BacktestRow", "backtest_items", "backtest_recent"]

_CHUNK = 500  # item records read per round trip


@dataclass(frozen=True, slots=True)
class BacktestRow:
    item: Item
    story_id: str
    story: StoryView | None  # when known (offline, or the story still in Redis)
    entities: tuple[Entity, ...]
    matches: tuple[RuleMatch, ...]
    duplicate_of: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.item.key,
            "title": self.item.title,
            "url": self.item.url,
            "feed": self.item.feed_name or self.item.feed_url,
            "published": self.item.published.isoformat() if self.item.published else None,
            "story": self.story_id,
            "story_outlets": [name for name, _ in self.story.outlets] if self.story else None,
            "duplicate_of": self.duplicate_of or None,
            "entities": [e.to_json() for e in self.entities],
            "matches": [
                {
                    "rule": m.rule_id,
                    "clauses": list(m.clauses),
                    "terms": [t.to_json() for t in m.terms],
                    "similarity": m.similarity,
                }
                for m in self.matches
            ],
        }


def _rules(config: Config, rule_id: str | None) -> RuleSet:
    """The rule asked for (enabled or not), or every enabled rule; KeyError if unknown."""
    if rule_id is None:
        chosen = [rule for rule in config.rules if rule.enabled]
    else:
        chosen = [
            rule.model_copy(update={"enabled": True}) for rule in config.rules if rule.id == rule_id
        ]
        if not chosen:
            raise KeyError(rule_id)
    return compile_rules(chosen, config.term_sets)


def backtest_recent(
    connection: redis.Redis, config: Config, rule_id: str | None, since_s: float
) -> Iterator[BacktestRow]:
    """The kept items of the last ``since_s`` seconds, oldest first, through the rules."""
    rules = _rules(config, rule_id)
    keys = Keys(config.redis.prefix)
    now = time.time()
    found = connection.zrangebyscore(keys.items_recent(), now - since_s, "+inf")
    item_keys = [key.decode() if isinstance(key, bytes) else str(key) for key in found]
    for start in range(0, len(item_keys), _CHUNK):
        chunk = item_keys[start : start + _CHUNK]
        raws = connection.mget([keys.item(key) for key in chunk])
        records = [json.loads(raw) for raw in raws if raw is not None]  # None: expired
        story_ids = sorted({str(record.get("story") or "") for record in records} - {""})
        stories = story_records(connection, keys, story_ids)
        for record in records:
            item = Item.from_json(record["item"])
            entities = tuple(Entity.from_json(e) for e in record.get("entities", []))
            story_id = record.get("story") or item.key
            kept = stories.get(story_id)
            view = kept.view if kept else None
            matches = tuple(rules.match(item, entities, view))
            yield BacktestRow(item, story_id, view, entities, matches)


def backtest_items(
    config: Config, items: Sequence[Item], rule_id: str | None
) -> Iterator[BacktestRow]:
    """``items`` through dedupe, stories, entities and the rules, in memory."""
    rules = _rules(config, rule_id)
    settings = config.workers.stories
    index = StoryIndex(MemoryBackend(), settings.window_hours * 3600, settings.threshold)
    dedupe = MemoryDedupe()
    extractor = load_extractor(config.workers.ner, watched=rules.watched_entities())
    found = extractor.extract_many([item_text(item) for item in items]) if items else []
    story_of: dict[str, StoryView] = {}
    clock = time.time()
    for item, entities in zip(items, found, strict=True):
        at = item.published.timestamp() if item.published else clock
        result = dedupe.dedupe([item])
        if result.duplicates:
            _, owner = result.duplicates[0]
            known = story_of.get(owner)
            copies = index.backend.add_copies([(known.id, item, at)]) if known else [None]
            view = copies[0] or known
            if view is not None:
                story_of[item.key] = view
            row_story = view.id if view else owner
            matches = tuple(rules.match(item, entities, view))
            yield BacktestRow(item, row_story, view, tuple(entities), matches, duplicate_of=owner)
            continue
        if settings.enabled:
            view = index.assign([item], at)[item.key].story
        else:
            view = StoryView(item.key, at, ((item.feed_name, at),), 1)
        story_of[item.key] = view
        matches = tuple(rules.match(item, entities, view))
        yield BacktestRow(item, view.id, view, tuple(entities), matches)
