"""Label rules (:mod:`workers.entities_rules`) and one sense per news cycle (the memory)."""

from __future__ import annotations

from zoneinfo import available_timezones

import pytest

from workers.entities_lift import Lift
from workers.entities_memory import EntityMemory
from workers.entities_rules import apply_rules, time_zone_abbreviations
from workers.model import Entity


def never(_: str) -> bool:
    return False


def labels(text: str, entities: list[Entity]) -> list[tuple[str, str]]:
    return [(text[e.start : e.end], e.label) for e in apply_rules(text, entities, never)]


def span(text: str, name: str, label: str) -> Entity:
    start = text.index(name)
    return Entity(name, label, start, start + len(name))


def test_a_head_noun_says_what_a_name_is() -> None:
    text = "Campbell Valley Regional Park, Reuben College and Kai Tak Airport."
    found = [
        span(text, "Campbell Valley Regional Park", "ORG"),
        span(text, "Reuben College", "PERSON"),
        span(text, "Kai Tak Airport", "PERSON"),
    ]
    assert labels(text, found) == [
        ("Campbell Valley Regional Park", "LOC"),
        ("Reuben College", "ORG"),
        ("Kai Tak Airport", "FAC"),
    ]


def test_a_head_noun_keeps_a_label_of_its_group_and_known_names() -> None:
    text = "Mackenzie River and Harvard University"
    found = [span(text, "Mackenzie River", "GPE"), span(text, "Harvard University", "ORG")]
    assert labels(text, found) == [("Mackenzie River", "GPE"), ("Harvard University", "ORG")]
    kept = apply_rules(text, [span(text, "Mackenzie River", "ORG")], lambda name: True)
    assert [e.label for e in kept] == ["ORG"]  # the gazetteer's word wins


def test_no_possessive_inside_a_person() -> None:
    text = "He is working on Kelvin’s Book with Tom Hanks’s crew."
    found = [span(text, "Kelvin’s Book", "PERSON"), span(text, "Tom Hanks", "PERSON")]
    assert labels(text, found) == [("Tom Hanks", "PERSON")]


def test_a_town_the_model_calls_a_person_is_a_place() -> None:
    text = "Talks in Sochi and Akron; Michael Jackson met Jackson, and Honda rose."
    found = [
        span(text, "Sochi", "PERSON"),
        span(text, "Akron", "PERSON"),
        span(text, "Michael Jackson", "PERSON"),
        Entity("Jackson", "PERSON", text.index("Jackson,"), text.index("Jackson,") + 7),
        span(text, "Honda", "ORG"),  # a firm named like a town stays a firm
    ]
    assert labels(text, found) == [
        ("Sochi", "GPE"),
        ("Akron", "GPE"),
        ("Michael Jackson", "PERSON"),
        ("Jackson", "PERSON"),  # part of a person's name in the same text
        ("Honda", "ORG"),
    ]
    kept = apply_rules(text, [span(text, "Sochi", "PERSON")], lambda name: True)
    assert [e.label for e in kept] == ["PERSON"]  # the gazetteer's word wins


def test_a_sentence_start_in_lower_case_elsewhere_is_no_name() -> None:
    text = (
        "Orcas mimic speech\nKiller whales copy words. A killer whale said hello. Killer Mike sang."
    )
    found = [
        span(text, "Killer", "ORG"),
        span(text, "Orcas", "LOC"),  # "orcas" is nowhere in lower case: kept
        span(text, "Killer Mike", "PERSON"),
    ]
    assert labels(text, found) == [("Orcas", "LOC"), ("Killer Mike", "PERSON")]


@pytest.mark.skipif(not available_timezones(), reason="no time-zone database on this machine")
def test_time_zones_are_not_organisations() -> None:
    assert {"GMT", "BST", "EST", "UTC"} <= time_zone_abbreviations()
    text = "Updated 8.12pm GMT by the BBC"
    assert labels(text, [span(text, "GMT", "ORG"), span(text, "BBC", "ORG")]) == [("BBC", "ORG")]


# --- one sense per news cycle ------------------------------------------------------------


def test_a_surname_seen_in_full_before_is_that_person() -> None:
    memory = EntityMemory()
    first = "Donald Trump spoke."
    Lift().apply(first, [span(first, "Donald Trump", "PERSON")], memory=memory)
    memory.remember([span(first, "Donald Trump", "PERSON")])
    later = "Protests during Trump's speech"
    [trump] = Lift().apply(later, [span(later, "Trump", "ORG")], memory=memory)
    assert (trump.text, trump.label, trump.canonical) == ("Trump", "PERSON", "Donald Trump")
    [alone] = Lift().apply(later, [span(later, "Trump", "ORG")])
    assert alone.label == "ORG"  # without the memory: as the model said


def test_surnames_in_memory() -> None:
    memory = EntityMemory()
    memory.remember([Entity("Trump", "ORG", 0, 5)])  # the model's word first
    memory.remember([Entity("Donald Trump", "PERSON", 0, 12)])
    assert memory.recall("Trump") == ("PERSON", "Donald Trump")
    assert memory.person_named("Trump") == "Donald Trump"
    memory.remember([Entity("Trump", "ORG", 0, 5), Entity("Trump", "PERSON", 0, 5)])
    assert memory.recall("Trump") == ("PERSON", "Donald Trump")  # the full name outweighs
    memory.remember([Entity("Melania Trump", "PERSON", 0, 13)])
    assert memory.recall("Trump") == ("PERSON", "")  # a Trump, but which one?
    assert memory.recall("Melania Trump") == ("PERSON", "")
    assert memory.recall("Nobody") is None
    assert memory.person_named("Trump") == ""
    memory.remember([Entity("Spurs", "PERSON", 0, 5)])  # a lone word: no surname of anyone
    assert memory.recall("Spurs") == ("PERSON", "")
    assert memory.person_named("Spurs") is None
