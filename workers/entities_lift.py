"""What a newsroom knows, applied to raw NER output: gazetteer, aliases, names, salience.

Role: the pure second half of the entities stage. :class:`Lift` takes one text and the
entities a model (or the fallback) found in it, and returns them corrected and
completed. No I/O, no model: the same code lifts spaCy and the fallback.

Steps, in order (each one is a reason the small model alone is weak on news):

1. **Phrase pass** (``gazetteer: true``): :meth:`workers.gazetteer.Gazetteer.find` over
   the text. A *strong* name (country, demonym, news organisation, configured alias with
   a known label, watched name from the rules) on the same span as a model entity, or
   covering it, sets label and canonical ("Bloomberg" GPE → ORG); where the model found
   nothing it adds the entity. Awards and recurring events ("Oscar", "State of the
   Union") are strong names labelled EVENT. A *weak* name (city, US state, continent)
   fills gaps and corrects place labels but never overrides a PERSON. A model entity that contains a
   name ("Bank of China") is kept as the model said, unless what it adds is only "The"
   or lower-case words ("first State of the Union" is the event).
2. **Label rules** (``rules: true``, :mod:`workers.entities_rules`): head nouns ("… Park"
   a place, "… College" an organisation), no possessive inside a person, no time zone
   or sentence-initial common word as a name.
3. **One sense per news cycle** (with a ``memory``): a lone word the model called an
   organisation or a place that is the surname of a person named in full in a recent
   item is that person ("Trump" ORG → PERSON, canonical "Donald Trump").
4. **Fast pass past the model's part** (``read`` shorter than the text, :func:`_beyond`):
   names the model found in the part it read, one to three capitalised words after a
   title or role word ("spokesman Zhao Lijian", "chief executive Elon Musk"), and names
   ``memory`` holds, each only where no entity is yet and not inside a longer name.
5. **People**: a one-word entity that is the first or last word of a multi-word PERSON
   in the same text is that person ("Xi" → "Xi Jinping", "Peskov" → "Dmitry Peskov"),
   label PERSON, even if the model called it a place; so is a model GPE right after a
   title word ("spokesman", "President"), and so is a one-word ORG/LOC there.
6. **One sense per text** (:func:`_propagate`): a PERSON or ORG the model found, and a
   person's surname, found again as a whole word outside any entity becomes an entity
   too ("Trump" in a headline the model skipped, after "Donald Trump" in the summary);
   a name the model labelled two ways in one text is not repeated.
7. **Canonical names**: configured aliases first, then :func:`workers.canonical`'s
   tables (label-compatible: "Georgia" as a PERSON stays Georgia). ``canonical`` is left
   empty when it equals the text.
8. **Salience** per canonical name, the same for each of its mentions:
   ``0.5 × [named in the headline] + 0.5 × (1 − 0.5^mentions)``, in (0, 1): a headline
   name outranks any number of body mentions; more mentions rank higher. The headline
   is the first line (``item_text`` puts the title there).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from workers.entities_rules import apply_rules
from workers.gazetteer import Gazetteer, Match, Name, base_gazetteer, city_names, lookup_key
from workers.model import Entity
from workers.query_words import strip_marks

if TYPE_CHECKING:  # the memory imports this module's name rules
    from workers.entities_memory import EntityMemory

__all__ = ["Lift", "inside_longer_name", "salience"]

_PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})
# A model GPE right after one of these is a person ("spokesman Zhao Lijian").
_TITLE_WORDS = """president premier minister spokesman spokeswoman spokesperson secretary
    adviser advisor chancellor senator governor mayor ambassador envoy general chairman
    chairwoman director mr mrs ms dr sir king queen prince pope"""
_TITLES = frozenset(_TITLE_WORDS.split())
# Capitalised at a sentence start, never repeated as a name on their own.
_COMMON_WORDS = """The A An This That It He She They We I In On At But And Or If When
    While After Before For From With By To Of Is Was Mr Mrs Ms Dr Sir"""
_COMMON = frozenset(_COMMON_WORDS.split())
# Titles that begin names of things too ("General Motors", "Premier League").
_NOT_BEFORE_NAMES = frozenset({"general", "premier", "director"})
# Roles news copy puts before a name, matched in lower case only ("chief executive Elon
# Musk", "manager Antonio Conte", "author Paul Shapiro"; not "Director General …").
_ROLE_WORDS = """executive founder chief director coach manager captain striker
    midfielder defender goalkeeper player author writer novelist actor actress singer
    rapper musician artist journalist reporter correspondent editor analyst economist
    professor lawyer attorney prosecutor judge candidate leader officer commander
    activist campaigner researcher scientist"""
# Past the model's part: one to three capitalised words right after a title or role
# word are a person ("Foreign Ministry spokesman Zhao Lijian", "National Security
# Adviser Jake Sullivan"). The name's words must not be titles ("Prime Minister X").
_NAME_WORD = r"(?!(?:{t})\b)[A-Z][^\W\d_]+(?:[-’'][A-Z][^\W\d_]+)?"
_TITLED = re.compile(
    r"\b(?:(?i:{t})\.?|{r}) ((?:{w})(?: (?:{w})){{0,2}})(?![^\W\d_])".format(
        t="|".join(sorted(_TITLES - _NOT_BEFORE_NAMES, key=len, reverse=True)),
        r="|".join(sorted(_ROLE_WORDS.split(), key=len, reverse=True)),
        w=_NAME_WORD.format(t="|".join(w.capitalize() for w in _TITLES)),
    )
)


def _news_case(name: str) -> str:
    """A watched name as news writes it: ``xi jinping`` or ``XI JINPING`` → ``Xi Jinping``;
    a name written in mixed case (``McDonald's``) is kept as written."""
    return name.title() if name.islower() or name.isupper() else name


def _watched_spellings(name: str) -> list[str]:
    """The spellings the phrase pass looks for (it matches case and accents exactly): as
    the rule writes the name, as news writes it, and without accents (``Xí`` → ``Xi``;
    a rule compares names case- and accent-insensitively, so all of them satisfy it)."""
    spellings = [name, _news_case(name)]
    spellings += [_without_accents(spelling) for spelling in spellings]
    return list(dict.fromkeys(spellings))


def _without_accents(text: str) -> str:
    return unicodedata.normalize("NFC", strip_marks(text))


class Lift:
    """The configured knowledge: base gazetteer (optional), aliases, watched names."""

    def __init__(
        self,
        *,
        gazetteer: bool = True,
        aliases: Mapping[str, Sequence[str]] | None = None,
        watched: Sequence[tuple[str, str]] = (),
        rules: bool = True,
    ) -> None:
        base = base_gazetteer()
        labels = {name: label for label, name in watched}
        extra: list[tuple[str, Name]] = [
            (surface, Name(label, _news_case(name)))
            for label, name in watched
            for surface in _watched_spellings(name)
        ]
        self._aliases: dict[str, str] = {}  # lookup key → canonical, for any label
        for canonical, spellings in (aliases or {}).items():
            known = labels.get(canonical) or _label_of(base.lookup(canonical))
            for spelling in (canonical, *spellings):
                self._aliases[lookup_key(spelling)] = canonical
                if known:
                    extra.append((spelling, Name(known, canonical)))
        self.finder: Gazetteer | None = base.extended(extra) if gazetteer else None
        self.rules = rules
        if rules:
            city_names()  # read once here, not on the first batch
        self._base = base

    def apply(
        self,
        text: str,
        found: Iterable[Entity],
        *,
        read: int | None = None,
        memory: EntityMemory | None = None,
    ) -> list[Entity]:
        """``found`` (in document order) corrected and completed; see the module docstring.

        ``read``: how much of ``text`` the model read (all of it by default); past it the
        fast pass (step 4) finds names without the model, ``memory``'s among them.
        """
        entities = sorted(found, key=lambda e: e.start)
        if self.finder is not None:
            entities = _merge(text, entities, self.finder.find(text))
        if self.rules:
            entities = apply_rules(text, entities, self.known)
        if memory is not None:
            entities = self._stream_people(entities, memory)
        if read is not None and read < len(text):
            entities = _beyond(text, entities, read, memory)
        entities = _people(text, entities)
        entities = _propagate(text, entities)
        entities = [self._canonical(e) for e in entities]
        return salience(text, entities)

    def _stream_people(self, entities: list[Entity], memory: EntityMemory) -> list[Entity]:
        """One sense per news cycle: a lone surname of a person named in full in a recent
        item is that person, whatever the model called it ("Trump" ORG → PERSON)."""
        out: list[Entity] = []
        for e in entities:
            person = memory.person_named(e.text) if " " not in e.text else None
            if person is not None and e.label in ("ORG", *_PLACE_LABELS) and not self.known(e.text):
                e = _with(e, label="PERSON", canonical=person)
            out.append(e)
        return out

    def known(self, surface: str) -> bool:
        """Whether the phrase pass finds ``surface`` by itself (gazetteer, alias, watched)."""
        return self.finder is not None and surface in self.finder.names

    def _canonical(self, entity: Entity) -> Entity:
        key = lookup_key(entity.canonical or entity.text)
        canonical = self._aliases.get(key)
        if canonical is None:
            name = self._base.lookup(entity.canonical or entity.text)
            canonical = entity.canonical
            if name is not None and _compatible(entity.label, name.label):
                canonical = name.canonical
        if canonical == entity.text:
            canonical = ""
        return _with(entity, canonical=canonical)


def salience(text: str, entities: Sequence[Entity]) -> list[Entity]:
    """Each entity with the salience of its canonical name (formula in the module docstring)."""
    headline_end = text.find("\n")
    if headline_end == -1:
        headline_end = len(text)
    mentions = Counter(e.name for e in entities)
    in_headline = {e.name for e in entities if e.start < headline_end}
    return [
        _with(
            e,
            salience=round(0.5 * (e.name in in_headline) + 0.5 * (1 - 0.5 ** mentions[e.name]), 4),
        )
        for e in entities
    ]


def _label_of(name: Name | None) -> str:
    return name.label if name is not None else ""


def _compatible(model_label: str, known_label: str) -> bool:
    if model_label == known_label:
        return True
    group = _PLACE_LABELS | {"NORP"}
    return model_label in group and known_label in group


def _with(entity: Entity, **changes: object) -> Entity:
    values: dict[str, object] = {
        "text": entity.text,
        "label": entity.label,
        "start": entity.start,
        "end": entity.end,
        "canonical": entity.canonical,
        "salience": entity.salience,
    }
    values.update(changes)
    return Entity(**values)  # type: ignore[arg-type]


def _from_match(text: str, match: Match) -> Entity:
    surface = text[match.start : match.end]
    canonical = "" if match.name.canonical == surface else match.name.canonical
    return Entity(surface, match.name.label, match.start, match.end, canonical=canonical)


def _merge(text: str, entities: list[Entity], matches: list[Match]) -> list[Entity]:
    """Model entities and gazetteer matches, one entity per span (rules in step 1)."""
    out = list(entities)
    for match in matches:
        overlapping = [e for e in out if e.start < match.end and match.start < e.end]
        if not overlapping:
            out.append(_from_match(text, match))
            continue
        if any(_contains(text, e, match) for e in overlapping):
            continue  # the model's entity is longer and contains the name: keep it
        if not match.name.strong and any(e.label == "PERSON" for e in overlapping):
            continue
        for e in overlapping:
            out.remove(e)
        out.append(_from_match(text, match))
    out.sort(key=lambda e: e.start)
    return out


def _contains(text: str, entity: Entity, match: Match) -> bool:
    """Whether the model's ``entity`` is a longer name around ``match``.

    Not when what it adds is only "The" or lower-case words and numbers ("The United
    States", "first State of the Union", "2018 Oscars"): that is the name itself.
    """
    if not (entity.start <= match.start and match.end <= entity.end):
        return False
    extra = f"{text[entity.start : match.start]} {text[match.end : entity.end]}".split()
    return any(word[0].isupper() and word != "The" for word in extra)


def _beyond(
    text: str, entities: list[Entity], read: int, memory: EntityMemory | None
) -> list[Entity]:
    """Names past the part the model read, found without it (step 4, the fast pass).

    In order of trust, each filling only spans no entity covers yet: a name the model
    found in this text's read part (any label), a capitalised run right after a title
    word ("spokesman Zhao Lijian": a person), a name the model found in a recent item
    (``memory``).
    """
    own: dict[str, tuple[str, str]] = {}
    for e in entities:
        if e.end <= read and len(e.text) >= 2 and e.text[0].isupper():
            own[e.text] = _same(own.get(e.text), (e.label, e.canonical))
    taken = [(e.start, e.end) for e in entities]
    added: list[Entity] = []

    def add(candidate: Entity) -> None:
        if not any(a < candidate.end and candidate.start < b for a, b in taken):
            added.append(candidate)
            taken.append((candidate.start, candidate.end))

    for surface, (label, canonical) in own.items():
        if not label or surface in _COMMON:
            continue
        start = text.find(surface, read)
        while start != -1:
            end = start + len(surface)
            if _whole_word(text, start, end) and not inside_longer_name(text, start, end):
                add(Entity(surface, label, start, end, canonical=canonical))
            start = text.find(surface, end)
    for match in _TITLED.finditer(text, read):
        add(Entity(match.group(1), "PERSON", match.start(1), match.end(1)))
    if memory is not None:
        for recalled in memory.find(text, read):
            add(recalled)
    return sorted([*entities, *added], key=lambda e: e.start) if added else entities


def inside_longer_name(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` runs on into capitalised words: part of a longer name.

    "Google" in "Google My Business", "Mike" in "Mike Gunderloy": a known short name
    found there is not that name. A common word or a title before it does not count
    ("In Ruby", "President Trump").
    """
    after = text[end : end + 2]
    if len(after) == 2 and after[0] == " " and after[1].isupper():
        return True
    if start >= 2 and text[start - 1] == " " and text[start - 2].isalpha():
        word = text[text.rfind(" ", 0, start - 1) + 1 : start - 1]
        return word[:1].isupper() and word not in _COMMON and word.lower() not in _TITLES
    return False


def _people(text: str, entities: list[Entity]) -> list[Entity]:
    """People named in full and in short in one text; GPEs after a title.

    "Xi" (any label but NORP) after or before "Xi Jinping" (PERSON) is Xi Jinping; a
    multi-word name whose last word is a PERSON elsewhere in the text is a person too
    ("Stormy Daniels" ORG, then "Daniels" PERSON).
    """
    full: dict[str, str] = {}  # first or last word → full name ("" if ambiguous)
    single = {e.text for e in entities if e.label == "PERSON" and " " not in e.text}
    for e in entities:
        words = e.text.split()
        if len(words) > 1 and (e.label == "PERSON" or (e.label != "NORP" and words[-1] in single)):
            for word in (words[0], words[-1]):
                full[word] = e.text if full.get(word, e.text) == e.text else ""
    out: list[Entity] = []
    for e in entities:
        words = e.text.split()
        person = full.get(e.text, "") if len(words) == 1 else ""
        if person and e.label in {"PERSON", *_PLACE_LABELS, "ORG"}:
            out.append(_with(e, label="PERSON", canonical=person))
        elif _looks_personal(text, e, words, single):
            out.append(_with(e, label="PERSON"))
        else:
            out.append(e)
    return out


def _looks_personal(text: str, entity: Entity, words: list[str], single: set[str]) -> bool:
    """A non-person name that the text shows to be a person's."""
    if len(words) > 1 and entity.label in {*_PLACE_LABELS, "ORG"} and words[-1] in single:
        return True  # "Stormy Daniels" (ORG) … "Daniels" (PERSON)
    personal = entity.label == "GPE" or (len(words) == 1 and entity.label in {"LOC", "ORG"})
    return personal and _after_title(text, entity.start)


def _after_title(text: str, start: int) -> bool:
    before = text[max(0, start - 16) : start].split()
    return bool(before) and before[-1].lower().rstrip(".") in _TITLES


def _propagate(text: str, entities: list[Entity]) -> list[Entity]:
    """One name, one sense per text: repeat what the model found where it missed it.

    A person's surname, or a person or organisation named once ("Trump" in a headline
    the model skipped, "Donald Trump" in the summary), found again as a whole word
    outside any entity becomes an entity with the same label and canonical name. Only
    capitalised names of two letters or more that are not common words are repeated.
    """
    known: dict[str, tuple[str, str]] = {}  # surface → (label, canonical), "" if ambiguous
    for e in entities:
        if e.label in ("PERSON", "ORG"):
            known[e.text] = _same(known.get(e.text), (e.label, e.canonical))
        words = e.text.split()
        if e.label == "PERSON" and len(words) > 1:
            surname = words[-1]
            known[surname] = _same(known.get(surname), ("PERSON", e.canonical or e.text))
    taken = [(e.start, e.end) for e in entities]
    added: list[Entity] = []
    for surface, (label, canonical) in known.items():
        if not label or len(surface) < 2 or not surface[0].isupper() or surface in _COMMON:
            continue
        start = text.find(surface)
        while start != -1:
            end = start + len(surface)
            if _whole_word(text, start, end) and not any(a < end and start < b for a, b in taken):
                added.append(Entity(surface, label, start, end, canonical=canonical))
                taken.append((start, end))
            start = text.find(surface, end)
    return sorted([*entities, *added], key=lambda e: e.start) if added else entities


def _same(known: tuple[str, str] | None, new: tuple[str, str]) -> tuple[str, str]:
    return new if known is None or known == new else ("", "")


def _whole_word(text: str, start: int, end: int) -> bool:
    return (start == 0 or not text[start - 1].isalnum()) and (
        end == len(text) or not text[end].isalnum()
    )
