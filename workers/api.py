"""The public surface of ``workers`` used by the CLI and the HTTP API (composition roots)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis

from monitor.config import Config, WebhookChannel
from monitor.items import Item
from monitor.keys import Keys
from workers.backtest import BacktestRow, backtest_items, backtest_recent
from workers.delivery.formats import template_problem
from workers.entities import annotate_lines, load_extractor
from workers.match import RuleMatch, RuleSet, clause_text, document_of
from workers.model import Entity
from workers.operations import (
    AlertSummary,
    list_alerts,
    list_dead,
    mute_story,
    replay,
    unmute_story,
)
from workers.query import And, Query, QueryError, parse_query, render
from workers.story_store import StoryRecord, recent_stories, story_records
from workers.worker import run_worker

__all__ = [
    "AlertSummary",
    "BacktestRow",
    "ItemVerdict",
    "QueryError",
    "StoryRecord",
    "annotate_lines",
    "backtest_items",
    "backtest_recent",
    "list_alerts",
    "list_dead",
    "load_extractor",
    "match_rule",
    "mute_story",
    "query_error",
    "recent_stories",
    "replay",
    "run_worker",
    "story_page",
    "story_records",
    "template_problems",
    "unmute_story",
]


def story_page(
    connection: redis.Redis, keys: Keys, offset: int, limit: int
) -> tuple[list[StoryRecord], int]:
    """One page of stories, newest first, and how many the index lists (for paging)."""
    ids = [
        raw.decode() if isinstance(raw, bytes) else str(raw)
        for raw in connection.zrevrange(keys.stories(), offset, offset + max(1, limit) - 1)
    ]
    found = story_records(connection, keys, ids)
    total = int(connection.zcard(keys.stories()))
    return [found[story] for story in ids if story in found], total


def template_problems(config: Config) -> list[str]:
    """``channels.<name>.template: <why>`` for each webhook template that fails on a
    sample alert, in the contexts the config will render it in (``wirewatch check``).

    Single alerts go to a channel without a ``digest`` window; digests to one with a
    window, or fed by a rule with a ``max`` rate (its overflow) or ``quiet_hours`` (what
    they held). A digest channel's single critical alerts are not checked: a digest-only
    template there stays valid.
    """
    problems = []
    for name, channel in config.channels.items():
        if not isinstance(channel, WebhookChannel):
            continue
        held = any(
            (rule.max_rate or rule.quiet_hours) and name in rule.channels for rule in config.rules
        )
        why = template_problem(
            channel, single=channel.digest is None, digest=channel.digest is not None or held
        )
        if why:
            problems.append(f"channels.{name}.template: fails on a sample alert: {why}")
    return problems


def query_error(
    rule_id: str, query: str, term_sets: Mapping[str, Sequence[str]] | None = None
) -> str | None:
    """Why a rule's query does not parse (naming the rule and position), or None."""
    try:
        parse_query(query, rule_id or None, term_sets)
    except QueryError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class ItemVerdict:
    """One item run through one rule (``wirewatch match``): the match, or what failed."""

    item: Item
    entities: tuple[Entity, ...]
    match: RuleMatch | None
    unmet: tuple[str, ...] = ()  # top-level clauses that did not hold, when no match


def match_rule(config: Config, rule_id: str, items: Sequence[Item]) -> list[ItemVerdict]:
    """Run entity extraction, then rule ``rule_id`` (enabled or not), on ``items``.

    Raises ``KeyError`` for an unknown rule and :class:`QueryError` for a bad query.
    """
    from workers.entities import item_text

    rule = next((rule for rule in config.rules if rule.id == rule_id), None)
    if rule is None:
        raise KeyError(rule_id)
    query = parse_query(rule.query, rule.id, config.term_sets)
    rules = RuleSet([(rule.id, query)])
    extractor = load_extractor(config.workers.ner, watched=rules.watched_entities())
    found = extractor.extract_many([item_text(item) for item in items]) if items else []
    verdicts = []
    for item, entities in zip(items, found, strict=True):
        document = document_of(item, entities)
        matches = rules.match_document(document)
        unmet: tuple[str, ...] = ()
        if not matches:
            # Cheap "why not": which top-level clauses failed on their own.
            parts = query.root.children if isinstance(query.root, And) else (query.root,)
            unmet = tuple(
                clause_text(part, document)
                for part in parts
                if document.evaluate(Query(render(part), part)) is None
            )
        verdicts.append(ItemVerdict(item, tuple(entities), matches[0] if matches else None, unmet))
    return verdicts
