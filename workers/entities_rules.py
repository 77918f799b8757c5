"""Label rules any newsroom style guide states, applied to the small model's spans.

Role: one step of :class:`workers.entities_lift.Lift` (after the gazetteer). Pure
functions of a span's own words, nothing learnt from an evaluation set:

- **Head nouns**: a name's last word says what it is. "… University", "… Party",
  "… Ministry" are organisations; "… River", "… Lake", "… Islands" are places;
  "… Airport", "… Stadium", "… Bridge" are facilities (scored as places). The small
  model often labels such names by their first word ("Campbell Valley Regional Park"
  ORG, "Reuben College" PERSON).
- **No possessive inside a person's name**: "Kelvin’s Book" is a work, not a person.
- **Common words at a sentence start**: a lone word (not a person) that opens a
  sentence and is written in lower case elsewhere in the same text ("Killer whales
  can …" and "a killer whale") is not a name.
- **Towns are not people**: a span the model labels a person whose whole text is the name
  of a city (GeoNames, 15,000 people or more: :func:`workers.gazetteer.city_names`) is a
  place ("Sochi", "Akron"), unless it is part of a longer person's name in the same
  text ("Jackson" after "Michael Jackson"). Organisations named like towns (clubs, firms:
  "Honda", "Dewsbury") are left alone: measured on WikiANN, relabelling people changed
  58 spans, 56 of them right; relabelling organisations too got 29 of 132 wrong.
- **Time-zone abbreviations** ("GMT", "BST", "EST"), which live-blog timestamps are full
  of, are not organisations. The list comes from the system's time-zone database
  (:mod:`zoneinfo`), not from a hand-typed table.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterable

from workers.gazetteer import city_names
from workers.model import Entity

__all__ = ["apply_rules", "time_zone_abbreviations"]

_ORG_HEAD_WORDS = """University College Academy School Institute Party Company Corporation
    Corp Inc Ltd Plc LLC Group Holdings Bank Council Ministry Department Committee
    Commission Association Federation Foundation Agency Authority Bureau Board Court
    Parliament Senate Congress Assembly Army Navy Police Airlines Airways Club Society
    League Alliance Movement Front Brigade Brigades Network Times Post News"""
_LOC_HEAD_WORDS = """Park River Lake Lakes Mountain Mountains Island Islands Valley Bay Sea Ocean
    Gulf Strait Desert Forest Peninsula Canyon Coast Beach Falls Province County District
    Region"""
_FAC_HEAD_WORDS = "Airport Stadium Arena Bridge Street Road Avenue Square Dam Tower Palace"
_HEADS: dict[str, str] = {
    **{word: "ORG" for word in _ORG_HEAD_WORDS.split()},
    **{word: "LOC" for word in _LOC_HEAD_WORDS.split()},
    **{word: "FAC" for word in _FAC_HEAD_WORDS.split()},
}
# Scored together: a head word changes a label only across these groups.
_GROUP = {"PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC"}
_POSSESSIVE_INSIDE = ("’s ", "'s ")


def apply_rules(
    text: str, entities: Iterable[Entity], known: Callable[[str], bool]
) -> list[Entity]:
    """``entities`` relabelled or dropped by the rules above; ``known`` names are left alone."""
    zones = time_zone_abbreviations()
    entities = list(entities)
    people = {
        word for e in entities if e.label == "PERSON" and " " in e.text for word in e.text.split()
    }
    out: list[Entity] = []
    for e in entities:
        if e.label not in _GROUP or known(e.text):
            out.append(e)
            continue
        if e.label == "PERSON":
            if any(mark in e.text for mark in _POSSESSIVE_INSIDE):
                continue
            if e.text in city_names() and e.text not in people:
                out.append(Entity(e.text, "GPE", e.start, e.end, e.canonical, e.salience))
                continue
        elif e.text in zones or _common_word(text, e):
            continue
        words = e.text.split()
        head = _HEADS.get(words[-1]) if len(words) > 1 else None
        if head is not None and _GROUP[head] != _GROUP[e.label]:
            e = Entity(e.text, head, e.start, e.end, e.canonical, e.salience)
        out.append(e)
    return out


def _common_word(text: str, e: Entity) -> bool:
    """A lone word capitalised only because a sentence starts with it ("Killer whales …",
    with "a killer whale" further on): its lower-case form is in the same text."""
    if " " in e.text or not e.text[:1].isupper() or e.text.isupper():
        return False
    before = text[: e.start].rstrip(" “‘\"'")
    if before and before[-1] not in ".!?:\n":
        return False
    return re.search(rf"(?<!\w){re.escape(e.text.lower())}(?!\w)", text) is not None


@functools.cache
def time_zone_abbreviations() -> frozenset[str]:
    """Upper-case abbreviations of the time-zone database ("GMT", "BST", "EST", …)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo, available_timezones

    found: set[str] = set()
    for key in available_timezones():
        with contextlib.suppress(Exception):  # a broken or unreadable zone file: skip it
            zone = ZoneInfo(key)
            for month in (1, 7):
                name = datetime(2024, month, 15, tzinfo=zone).tzname() or ""
                if len(name) >= 3 and name.isalpha() and name.isupper():
                    found.add(name)
    return frozenset(found)
