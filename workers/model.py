"""Values shared by the worker stages: entities, matched terms, alerts.

Frozen dataclasses with explicit JSON round-trips (queue payloads are JSON, never
pickle). An :class:`Alert` is what every delivery channel receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.items import Item

ALERT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entity:
    """A named entity found in ``title + "\\n" + summary``; offsets index that text."""

    text: str
    label: str  # spaCy label: PERSON, ORG, GPE, NORP, LOC, ...
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, "start": self.start, "end": self.end}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entity:
        return cls(data["text"], data["label"], int(data["start"]), int(data["end"]))


@dataclass(frozen=True, slots=True)
class MatchedTerm:
    """One query term that matched: where (field and character span) and the text seen."""

    term: str  # the term or phrase as written in the query
    field: str  # "title" or "summary"
    start: int  # character offsets into that field's plain text
    end: int
    text: str  # the text at that span (may differ by case or inflection)

    def to_json(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "field": self.field,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MatchedTerm:
        return cls(data["term"], data["field"], data["start"], data["end"], data["text"])


@dataclass(frozen=True, slots=True)
class Alert:
    """One (rule, story) match, ready for delivery. ``id`` is stable for that pair."""

    id: str
    rule_id: str
    query: str
    item: Item
    entities: tuple[Entity, ...] = ()
    matched: tuple[MatchedTerm, ...] = ()
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    story_id: str = ""  # the story the item belongs to; "" means the item is its own story
    severity: str = "info"

    @property
    def story(self) -> str:
        return self.story_id or self.item.key

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ALERT_VERSION,
            "id": self.id,
            "rule": {"id": self.rule_id, "query": self.query, "severity": self.severity},
            "story": {"id": self.story},
            "item": self.item.to_json(),
            "entities": [entity.to_json() for entity in self.entities],
            "matched": [term.to_json() for term in self.matched],
            "created": self.created.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        if data.get("v") != ALERT_VERSION:
            raise ValueError(f"unsupported alert version {data.get('v')!r}")
        return cls(
            id=data["id"],
            rule_id=data["rule"]["id"],
            query=data["rule"]["query"],
            item=Item.from_json(data["item"]),
            entities=tuple(Entity.from_json(e) for e in data["entities"]),
            matched=tuple(MatchedTerm.from_json(m) for m in data["matched"]),
            created=datetime.fromisoformat(data["created"]),
            story_id=data.get("story", {}).get("id", ""),
            severity=data["rule"].get("severity", "info"),
        )
