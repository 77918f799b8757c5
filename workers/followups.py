"""Follow-ups: when a story a rule alerted on grows or changes, tell that rule's channels.

Role: the pure decisions. A rule's first alert on a story is recorded as a
:class:`FirstAlert` (in ``story:{id}:alerts``); :func:`follow_ups` says, for one item
that joined the story (or an exact copy of one), which follow-ups the rule's
``follow_up`` settings ask for, each with a stable discriminator so its alert id —
:func:`follow_up_id` — is the same on every worker and every retry:

* ``outlets``: the story reached ``follow_up.outlets`` independent outlets — once, and
  not when the first alert already showed that many;
* ``new_entities``: the item names someone or something (canonical name) the story had
  not named before — one follow-up per item, listing every new name;
* ``updates``: the item came again with a material change (:mod:`workers.updates`).

The item that raised the first alert raises no follow-up of the kinds above but updates.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from monitor.config import RuleConfig
from monitor.keys import digest
from workers.model import StoryView

__all__ = ["FirstAlert", "FollowUpDecision", "follow_up_id", "follow_ups"]


@dataclass(frozen=True, slots=True)
class FirstAlert:
    """A rule's first alert on a story: what follow-ups thread to."""

    id: str
    item_key: str
    outlets: int
    title: str

    def to_json(self) -> str:
        data = {"id": self.id, "item": self.item_key, "outlets": self.outlets, "title": self.title}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> FirstAlert:
        data = json.loads(raw)
        return cls(data["id"], data["item"], int(data["outlets"]), data.get("title", ""))


@dataclass(frozen=True, slots=True)
class FollowUpDecision:
    kind: str  # "follow_up" or "update"
    what: str  # stable discriminator, part of the alert id
    reason: str  # for people


def follow_up_id(rule_id: str, story_id: str, what: str) -> str:
    return digest(f"{rule_id}\x00{story_id}\x00{what}", 32)


def follow_ups(
    rule: RuleConfig,
    first: FirstAlert,
    story: StoryView,
    item_key: str,
    new_names: Collection[str] = (),
    update: tuple[str, str] | None = None,
) -> list[FollowUpDecision]:
    """The follow-ups ``rule`` asks for after ``item_key`` joined ``story``.

    ``new_names``: canonical names the item adds to the story; ``update``: ``(version,
    reason)`` when the item came again changed materially (version: a digest of its text).
    """
    settings = rule.follow_up
    out = []
    own = item_key == first.item_key
    wanted = settings.outlets
    if wanted is not None and not own and first.outlets < wanted <= story.outlet_count:
        names = ", ".join(name for name, _ in story.outlets[:wanted])
        reason = f"the story is now carried by {story.outlet_count} outlets ({names}, …)"
        out.append(FollowUpDecision("follow_up", f"outlets:{wanted}", reason))
    if settings.new_entities and new_names and not own:
        listed = sorted(new_names)
        reason = "the story now names " + ", ".join(listed)
        out.append(FollowUpDecision("follow_up", "entities:" + "\x00".join(listed), reason))
    if settings.updates and update is not None:
        version, reason = update
        out.append(FollowUpDecision("update", f"update:{item_key}:{version}", reason))
    return out
