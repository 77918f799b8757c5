"""Material update or cosmetic edit (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitor.items import Item
from workers.model import Entity
from workers.updates import material_change

OLD = Item(
    key="k",
    feed_url="https://a.test/feed",
    feed_name="A",
    url="https://a.test/1",
    title="Earthquake kills 3 in southern Turkey",
    summary="A magnitude 5.9 earthquake struck near Adana on Monday, officials said.",
)
ENTITIES = [Entity("Turkey", "GPE", 32, 38), Entity("Adana", "GPE", 70, 75)]


@pytest.mark.parametrize(
    ("title", "summary"),
    [
        ("Earthquake kills 3 in southern Turkey.", OLD.summary),  # punctuation
        ("EARTHQUAKE KILLS 3 IN SOUTHERN TURKEY", OLD.summary),  # case
        ("Earthquake  kills 3 in  southern Turkey ", OLD.summary),  # white space
        ("Earthquake kills 3 in the southern Turkey", OLD.summary),  # a stop word
        ("Earthqauke kills 3 in southern Turkey", OLD.summary),  # a typo fixed / made
        (OLD.title, "A magnitude 5.9 quake struck near Adana on Monday, according to officials."),
    ],
)
def test_cosmetic_edits_are_not_material(title: str, summary: str) -> None:
    new = replace(OLD, title=title, summary=summary)
    assert material_change(OLD, ENTITIES, new, ENTITIES) is None


def test_a_changed_number_is_material() -> None:
    new = replace(OLD, title="Earthquake kills 12 in southern Turkey")
    reason = material_change(OLD, ENTITIES, new, ENTITIES)
    assert reason == "numbers -3 +12"


def test_a_new_number_in_the_summary_is_material() -> None:
    new = replace(OLD, summary=OLD.summary + " At least 40 people were injured.")
    assert material_change(OLD, ENTITIES, new, ENTITIES) == "numbers +40"


def test_a_rewritten_headline_is_material() -> None:
    new = replace(OLD, title="Earthquake in southern Turkey: rescuers search rubble")
    reason = material_change(OLD, ENTITIES, new, ENTITIES)
    assert reason is not None and reason.startswith("headline changed: ")


def test_a_lost_negation_is_material() -> None:
    old = replace(OLD, title="Minister will not resign over report")
    new = replace(OLD, title="Minister will resign over report")
    assert material_change(old, [], new, []) is not None


def test_entities_added_or_removed_are_material() -> None:
    syria = Entity("Syria", "GPE", 80, 85)
    new = replace(OLD, summary=OLD.summary.replace("Adana", "the border with Syria"))
    reason = material_change(OLD, ENTITIES, new, [*ENTITIES[:1], syria])
    assert reason == "entities +Syria, -Adana"
    # The model seeing a name in one version only, in words both have, is no change.
    assert (
        material_change(OLD, ENTITIES, OLD, [*ENTITIES, Entity("Earthquake", "ORG", 0, 10)]) is None
    )
    # Canonical names: "U.S." and "United States" are one entity.
    us = Entity("U.S.", "GPE", 0, 4, canonical="United States")
    usa = Entity("United States", "GPE", 0, 13)
    assert material_change(OLD, [us], OLD, [usa]) is None
