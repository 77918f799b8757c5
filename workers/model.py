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
    """A named entity found in ``title + "\\n" + summary``; offsets index that text.

    ``canonical`` is the name rules and stories use ("U.S." -> "United States",
    "Chinese" -> "China"); empty means the text is already canonical. ``salience``
    ranks entities of one item (headline mentions and repeated names weigh more).
    """

    text: str
    label: str  # spaCy label: PERSON, ORG, GPE, NORP, LOC, ...
    start: int
    end: int
    canonical: str = ""
    salience: float = 0.0

    @property
    def name(self) -> str:
        """The canonical name, or the text when no canonical form is known."""
        return self.canonical or self.text

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "label": self.label,
            "canonical": self.name,
            "start": self.start,
            "end": self.end,
            "salience": self.salience,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entity:
        return cls(
            data["text"],
            data["label"],
            int(data["start"]),
            int(data["end"]),
            canonical=data.get("canonical", ""),
            salience=float(data.get("salience", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class StoryView:
    """What rules and alerts know of a story: when and where it has been seen.

    ``outlets`` holds each outlet (feed name, or feed URL) once, with the time (epoch
    seconds) it first carried the story, in that order; the first is the first outlet.
    """

    id: str
    first_seen: float
    outlets: tuple[tuple[str, float], ...] = ()
    items: int = 1

    @property
    def first_outlet(self) -> str:
        return self.outlets[0][0] if self.outlets else ""

    @property
    def outlet_count(self) -> int:
        return len(self.outlets)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "first_seen": self.first_seen,
            "first_outlet": self.first_outlet,
            "outlet_count": self.outlet_count,
            "outlets": [[name, seen] for name, seen in self.outlets],
            "items": self.items,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoryView:
        outlets = tuple((str(name), float(seen)) for name, seen in data.get("outlets", ()))
        return cls(data["id"], float(data["first_seen"]), outlets, int(data.get("items", 1)))


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
    # "new": the first alert of this rule on this story; "follow_up": the story grew;
    # "update": an item of the story changed materially. Follow-ups thread to ``thread_id``.
    kind: str = "new"
    thread_id: str = ""
    thread_title: str = ""  # the headline of the alert a follow-up threads to
    reason: str = ""  # why a follow-up or update was sent, for people
    story_view: StoryView | None = None
    explain: tuple[str, ...] = ()  # the query clauses that were satisfied
    similarity: float | None = None  # of a semantic ``about:`` clause, when the rule has one

    @property
    def story(self) -> str:
        return self.story_id or self.item.key

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ALERT_VERSION,
            "id": self.id,
            "rule": {"id": self.rule_id, "query": self.query, "severity": self.severity},
            "kind": self.kind,
            "thread_id": self.thread_id or None,
            "thread_title": self.thread_title or None,
            "reason": self.reason or None,
            "story": self.story_view.to_json() if self.story_view else {"id": self.story},
            "item": self.item.to_json(),
            "entities": [entity.to_json() for entity in self.entities],
            "matched": [term.to_json() for term in self.matched],
            "explain": list(self.explain),
            "similarity": self.similarity,
            "created": self.created.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        if data.get("v") != ALERT_VERSION:
            raise ValueError(f"unsupported alert version {data.get('v')!r}")
        story = data.get("story", {})
        return cls(
            id=data["id"],
            rule_id=data["rule"]["id"],
            query=data["rule"]["query"],
            item=Item.from_json(data["item"]),
            entities=tuple(Entity.from_json(e) for e in data["entities"]),
            matched=tuple(MatchedTerm.from_json(m) for m in data["matched"]),
            created=datetime.fromisoformat(data["created"]),
            story_id=story.get("id", ""),
            severity=data["rule"].get("severity", "info"),
            kind=data.get("kind", "new"),
            thread_id=data.get("thread_id") or "",
            thread_title=data.get("thread_title") or "",
            reason=data.get("reason") or "",
            story_view=StoryView.from_json(story) if "first_seen" in story else None,
            explain=tuple(data.get("explain", ())),
            similarity=data.get("similarity"),
        )
