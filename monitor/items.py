"""The normalised feed item: the value that travels from poller to workers.

An :class:`Item` is built by :mod:`monitor.normalise` and serialised as small,
versioned JSON into rq job arguments (no pickle). Everything downstream — dedupe,
entities, rules, alerts — reads items only through this type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a feed, normalised.

    ``key`` is stable across polls of the same feed (derived from the feed URL and the
    entry's GUID, or its canonical URL, or its title when neither exists).
    ``title`` and ``summary`` are plain text; ``url`` is canonical (no tracking
    parameters); ``published`` is UTC or ``None`` when the feed gives no usable date.
    """

    key: str
    feed_url: str
    feed_name: str
    url: str
    title: str
    summary: str = ""
    guid: str | None = None
    published: datetime | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    language: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: that deep-copies every value and cost
        # ~0.1 ms an item on the poller's event loop (every new item passes here).
        return {
            "key": self.key,
            "feed_url": self.feed_url,
            "feed_name": self.feed_name,
            "url": self.url,
            "title": self.title,
            "summary": self.summary,
            "guid": self.guid,
            "published": self.published.isoformat() if self.published else None,
            "tags": list(self.tags),
            "language": self.language,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        published = data.get("published")
        return cls(
            key=data["key"],
            feed_url=data["feed_url"],
            feed_name=data.get("feed_name", ""),
            url=data.get("url", ""),
            title=data.get("title", ""),
            summary=data.get("summary", ""),
            guid=data.get("guid"),
            published=_parse_time(published) if published else None,
            tags=tuple(data.get("tags", ())),
            language=data.get("language"),
        )


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def batch_payload(items: list[Item]) -> dict[str, Any]:
    """The JSON argument of one ``process_batch`` job."""
    return {"v": PAYLOAD_VERSION, "items": [item.to_json() for item in items]}


def items_from_payload(payload: dict[str, Any]) -> list[Item]:
    """Inverse of :func:`batch_payload`; rejects payload versions it does not know."""
    version = payload.get("v")
    if version != PAYLOAD_VERSION:
        raise ValueError(f"unsupported batch payload version {version!r}")
    return [Item.from_json(raw) for raw in payload["items"]]
