"""One batch of items through the worker stages: dedupe → entities → stories → rules →
alerts and follow-ups → the items kept for backtests.

Role: the body of ``process_batch`` (:mod:`workers.jobs` is the thin rq entry point).
Round trips to Redis per batch: exact dedupe (1), stories (probe, fetch, commit: 2–3),
exact copies' stories (0–2), the touched stories' alerts and names with the items'
previous versions (1); the claims of every alert the batch decided (1,
:func:`workers.alerts.raise_alerts`); then one MULTI (1) with the alerts' routing (flags,
history, outbox entries), every item's state (its record, the story's names and first
alerts) and the batch's metrics (:mod:`monitor.metrics`: items by result, story joins,
matches per rule, alerts raised, publication → match); last, the first attempts the
fatigue rules send now (:mod:`workers.outbox`: 2 round trips for all, and the sends).

Order matters for restart safety: alerts and follow-ups (idempotent by id) are claimed
*before* the state they are decided from is written (the story's names, the item's
stored version — written in the same MULTI as the alerts' routing; a later item of the batch
sees the earlier ones' through the in-memory :class:`_Story`), so a batch retried after
a crash decides the same again and its repeated alerts are recognised by id; a batch
processed twice finds every item's story in ``story_of`` and raises nothing new.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis
import structlog

from monitor.config import RuleConfig
from monitor.items import Item
from monitor.keys import Keys, digest
from monitor.metrics import (
    ALERTS_RAISED,
    ITEMS_PROCESSED,
    PUBLISH_TO_MATCH,
    RULE_MATCHES,
    STORY_JOINS,
    MetricsBuffer,
)
from workers.alerts import alert_id, raise_alerts
from workers.dedupe import dedupe, release
from workers.entities import distinct, item_text
from workers.followups import FirstAlert, follow_up_id, follow_ups
from workers.match import RuleMatch
from workers.model import Alert, Entity, StoryView
from workers.outbox import Send, send_all
from workers.resources import Resources
from workers.stories import StoryIndex, outlet_of
from workers.story_store import RedisBackend
from workers.updates import material_change

log = structlog.get_logger()

__all__ = ["process_items"]


@dataclass
class _Story:
    """What the batch knows of one story: its view, rules' first alerts, names so far."""

    view: StoryView
    alerts: dict[str, FirstAlert] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


@dataclass
class _Context:
    connection: redis.Redis
    res: Resources
    now: float
    counts: dict[str, int]
    rules: dict[str, RuleConfig]
    writes: redis.client.Pipeline  # MULTI: the alerts' routing, the items' state, metrics
    metrics: MetricsBuffer = field(default_factory=MetricsBuffer)
    outbox: list[Send] = field(default_factory=list)  # sent when the batch is done
    # Alerts decided, raised together once every item is decided: (alert, rule, count).
    alerts: list[tuple[Alert, RuleConfig, str]] = field(default_factory=list)


def process_items(
    connection: redis.Redis, res: Resources, items: list[Item]
) -> tuple[dict[str, int], list[tuple[Item, str]]]:
    """Process a batch; returns the counts and the items that failed (with a reason)."""
    now = time.time()
    keys = res.keys
    item_ttl = int(res.config.workers.dedupe_days * 86400)
    found = dedupe(connection, keys, items, item_ttl)
    for item, owner in found.duplicates:
        log.info("item_duplicate", item=item.key, feed=item.feed_name, duplicate_of=owner)
    extracted = res.extractor.extract_many([item_text(item) for item in found.new])
    views, joined = _assign(connection, res, found.new, now)
    copies = _copies(connection, res, found.duplicates, views, now)
    stories, previous, owner_entities = _load(connection, keys, views, copies)
    context = _Context(
        connection,
        res,
        now,
        {
            "new": len(found.new),
            "duplicates": len(found.duplicates),
            "stories": 0,
            "matches": 0,
            "alerts": 0,
            "follow_ups": 0,
        },
        {rule.id: rule for rule in res.config.rules if rule.enabled},
        connection.pipeline(transaction=True),
    )
    context.counts["stories"] = len({view.id for view in views.values()})
    failed: list[tuple[Item, str]] = []
    for item, entities in zip(found.new, extracted, strict=True):
        try:
            story = stories[views[item.key].id]
            story.view = views[item.key]
            _process_item(context, item, entities, story, previous.get(item.key))
        except Exception as exc:  # one bad item must not hide the others
            log.exception("item_failed", item=item.key, feed=item.feed_name, title=item.title)
            failed.append((item, f"{type(exc).__name__}: {exc}"))
    for item, owner, view in copies:
        story = stories[view.id]
        story.view = view
        _raise_follow_ups(context, item, owner_entities.get(owner, []), story, None, [])
    if failed:
        release(connection, keys, [item for item, _ in failed])
    _raise(context)
    metrics = context.metrics
    metrics.inc(ITEMS_PROCESSED, "new", by=len(found.new) - len(failed))
    metrics.inc(ITEMS_PROCESSED, "duplicate", by=len(found.duplicates))
    metrics.inc(ITEMS_PROCESSED, "failed", by=len(failed))
    # An item processed before (edited, or its batch run again) is no news for a story.
    metrics.inc(STORY_JOINS, by=len(joined - previous.keys()))
    if found.new:
        ttl = int(res.config.workers.dedupe_days * 86400)
        context.writes.zremrangebyscore(keys.items_recent(), "-inf", now - ttl)
        context.writes.expire(keys.items_recent(), ttl)
    metrics.write(context.writes, keys)
    context.writes.execute()
    # Last: the alerts are recorded, routed and in the outbox; a crash from here on
    # leaves their sending to the outbox sweep.
    sent = send_all(connection, res, context.outbox)
    context.counts["sent"] = sent["sent"]
    return context.counts, failed


def _raise(context: _Context) -> None:
    """Claim the batch's alerts (one round trip) and route them: their flags, history
    and outbox entries join the batch's writes."""
    pending = [(alert, rule) for alert, rule, _ in context.alerts]
    created = raise_alerts(
        context.connection, context.res, pending, context.outbox, writes=context.writes
    )
    for (alert, rule, counter), new in zip(context.alerts, created, strict=True):
        if new:
            context.counts[counter] += 1
            context.metrics.inc(ALERTS_RAISED, rule.id, alert.kind)


def _assign(
    connection: redis.Redis, res: Resources, items: Sequence[Item], now: float
) -> tuple[dict[str, StoryView], set[str]]:
    """Each item's story, and the keys of the items that joined a story (not started one)."""
    settings = res.config.workers.stories
    if not settings.enabled:  # every item is its own story
        return {i.key: StoryView(i.key, now, ((outlet_of(i), now),), 1) for i in items}, set()
    if not items:
        return {}, set()
    backend = RedisBackend(connection, res.keys, int(res.config.workers.dedupe_days * 86400))
    index = StoryIndex(backend, settings.window_hours * 3600, settings.threshold)
    found = index.assign(items, now)
    joined = {key for key, assignment in found.items() if not assignment.created}
    return {key: assignment.story for key, assignment in found.items()}, joined


def _copies(
    connection: redis.Redis,
    res: Resources,
    duplicates: Sequence[tuple[Item, str]],
    views: dict[str, StoryView],
    now: float,
) -> list[tuple[Item, str, StoryView]]:
    """Exact copies from other feeds count as outlets of their original's story."""
    if not duplicates or not res.config.workers.stories.enabled:
        return []
    known = {owner: views[owner].id for _, owner in duplicates if owner in views}
    unknown = sorted({owner for _, owner in duplicates} - known.keys())
    if unknown:
        values = connection.mget([res.keys.story_of(owner) for owner in unknown])
        for owner, value in zip(unknown, values, strict=True):
            if value is not None:
                known[owner] = value.decode() if isinstance(value, bytes) else str(value)
    wanted = [(item, owner) for item, owner in duplicates if owner in known]
    backend = RedisBackend(connection, res.keys, int(res.config.workers.dedupe_days * 86400))
    added = backend.add_copies([(known[owner], item, now) for item, owner in wanted])
    return [
        (item, owner, view)
        for (item, owner), view in zip(wanted, added, strict=True)
        if view is not None and item.key != owner
    ]


def _load(
    connection: redis.Redis,
    keys: Keys,
    views: dict[str, StoryView],
    copies: Sequence[tuple[Item, str, StoryView]],
) -> tuple[dict[str, _Story], dict[str, dict[str, object]], dict[str, list[Entity]]]:
    """One round trip: per story its first alerts and names; items' stored versions."""
    by_id = {view.id: view for view in views.values()} | {v.id: v for _, _, v in copies}
    ids = sorted(by_id)
    records = list(views) + [owner for _, owner, _ in copies]
    pipe = connection.pipeline(transaction=False)
    for story in ids:
        pipe.hgetall(keys.story_alerts(story))
        pipe.smembers(keys.story_entities(story))
    for key in records:
        pipe.get(keys.item(key))
    replies = pipe.execute()
    stories = {}
    for index, story in enumerate(ids):
        alerts, names = replies[2 * index], replies[2 * index + 1]
        stories[story] = _Story(
            by_id[story],
            {rule.decode(): FirstAlert.from_json(raw) for rule, raw in alerts.items()},
            {name.decode() for name in names},
        )
    previous: dict[str, dict[str, object]] = {}
    for key, raw in zip(records, replies[2 * len(ids) :], strict=True):
        if raw is not None:
            previous[key] = json.loads(raw)
    owner_entities = {
        owner: [Entity.from_json(e) for e in previous[owner].get("entities", [])]  # type: ignore[attr-defined]
        for _, owner, _ in copies
        if owner in previous
    }
    return stories, previous, owner_entities


def _process_item(
    context: _Context,
    item: Item,
    entities: list[Entity],
    story: _Story,
    previous: dict[str, object] | None,
) -> None:
    res = context.res
    keys = res.keys
    earlier = dict(story.alerts)  # rules that alerted before this item: follow-ups
    matches = res.rules.match(item, entities, story.view)
    if matches and item.published is not None:
        context.metrics.observe(PUBLISH_TO_MATCH, time.time() - item.published.timestamp())
    for match in matches:
        context.counts["matches"] += 1
        context.metrics.inc(RULE_MATCHES, match.rule_id)
        rule = context.rules.get(match.rule_id)
        if rule is None:
            continue
        alert = _alert(match, rule, item, entities, story.view, alert_id(rule.id, story.view.id))
        context.alerts.append((alert, rule, "alerts"))
        if rule.id not in story.alerts:
            first = FirstAlert(alert.id, item.key, story.view.outlet_count, item.title)
            story.alerts[rule.id] = first
            ttl = int(res.config.workers.stories.window_hours * 3600)
            context.writes.hsetnx(keys.story_alerts(story.view.id), rule.id, first.to_json())
            context.writes.expire(keys.story_alerts(story.view.id), ttl)
    update = _update(item, entities, previous)
    names = {entity.name for entity in entities}
    new_names = sorted(names - story.names)
    _raise_follow_ups(context, item, entities, story, update, new_names, matches, alerts=earlier)
    story.names |= names
    _store(context, item, entities, story, names)


def _update(
    item: Item, entities: list[Entity], previous: dict[str, object] | None
) -> tuple[str, str] | None:
    """``(version, reason)`` when the item came before with different, material text."""
    if previous is None:
        return None
    old = Item.from_json(previous["item"])  # type: ignore[arg-type]
    if (old.title, old.summary) == (item.title, item.summary):
        return None
    old_entities = [Entity.from_json(e) for e in previous.get("entities", [])]  # type: ignore[attr-defined]
    reason = material_change(old, old_entities, item, entities)
    if reason is None:
        log.info("item_edited", item=item.key, material=False)
        return None
    log.info("item_updated", item=item.key, reason=reason)
    return digest(f"{item.title}\x00{item.summary}", 16), reason


def _raise_follow_ups(
    context: _Context,
    item: Item,
    entities: list[Entity],
    story: _Story,
    update: tuple[str, str] | None,
    new_names: Sequence[str],
    matches: Sequence[RuleMatch] = (),
    alerts: dict[str, FirstAlert] | None = None,
) -> None:
    by_rule = {match.rule_id: match for match in matches}
    for rule_id, first in (story.alerts if alerts is None else alerts).items():
        rule = context.rules.get(rule_id)
        if rule is None:
            continue
        for decision in follow_ups(rule, first, story.view, item.key, new_names, update):
            match = by_rule.get(rule_id) or RuleMatch(rule_id, rule.query, ())
            alert = _alert(
                match,
                rule,
                item,
                entities,
                story.view,
                follow_up_id(rule_id, story.view.id, decision.what),
                kind=decision.kind,
                first=first,
                reason=decision.reason,
            )
            context.alerts.append((alert, rule, "follow_ups"))


def _alert(
    match: RuleMatch,
    rule: RuleConfig,
    item: Item,
    entities: list[Entity],
    view: StoryView,
    id_: str,
    *,
    kind: str = "new",
    first: FirstAlert | None = None,
    reason: str = "",
) -> Alert:
    return Alert(
        id=id_,
        rule_id=rule.id,
        query=match.query,
        item=item,
        entities=tuple(distinct(entities)),
        matched=match.terms,
        story_id=view.id,
        severity=rule.severity,
        kind=kind,
        thread_id=first.id if first else "",
        thread_title=first.title if first else "",
        reason=reason,
        story_view=view,
        explain=match.clauses,
        similarity=match.similarity,
    )


def _store(
    context: _Context, item: Item, entities: list[Entity], story: _Story, names: set[str]
) -> None:
    """Keep the item (backtests, update detection) and the story's names."""
    keys, config = context.res.keys, context.res.config
    ttl = int(config.workers.dedupe_days * 86400)
    record = {
        "item": item.to_json(),
        "entities": [e.to_json() for e in entities],
        "story": story.view.id,
    }
    pipe = context.writes  # executed once the batch's alerts are raised
    pipe.set(keys.item(item.key), json.dumps(record, separators=(",", ":")), ex=ttl)
    pipe.zadd(keys.items_recent(), {item.key: context.now})
    if names:
        pipe.sadd(keys.story_entities(story.view.id), *sorted(names))
        pipe.expire(
            keys.story_entities(story.view.id), int(config.workers.stories.window_hours * 3600)
        )
