"""Entity memory: names the model found in recent items, found again without the model.

Role: the long-lived half of the entities stage's fast pass. The model reads only an
item's headline and lede (:func:`workers.entities.lede`); a name it found there in one
item ("Jake Sullivan", "Gazprom") is likely to be named again in the bodies of later
items of the same news cycle, where the model does not read. :class:`EntityMemory` keeps
the last ``size`` such names (an LRU: a name seen again moves to the front) and finds
them in a text with one dict lookup per word, like the gazetteer.

A name seen with two different labels or canonical names is ambiguous and is not
found again until it falls out of the memory. No I/O; one memory per extractor, so per
worker process (jobs run in-process by default, so the memory outlives a batch).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from workers.entities_lift import inside_longer_name
from workers.model import Entity

__all__ = ["EntityMemory", "Recalled"]

_WORD = re.compile(r"[^\W_]+")
# Capitalised for other reasons than being a name: never remembered.
_NOT_NAME_WORDS = """The A An This That These Those It Its He She They We I In On At But
    And Or If When While After Before For From With By To Of Is Was Mr Mrs Ms Dr Sir
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April
    May June July August September October November December Today Yesterday Tomorrow"""
_NOT_NAMES = frozenset(_NOT_NAME_WORDS.split())
Recalled = tuple[str, str]  # (label, canonical); ("", "") when ambiguous


class EntityMemory:
    """A bounded LRU of surface form → (label, canonical), with a per-word finder."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._names: OrderedDict[str, Recalled] = OrderedDict()
        self._by_first: dict[str, set[str]] = {}  # first word → surfaces starting with it
        self._surnames: set[str] = set()  # surfaces remembered as a person's surname

    def __len__(self) -> int:
        return len(self._names)

    def clear(self) -> None:
        self._names.clear()
        self._by_first.clear()
        self._surnames.clear()

    def remember(self, entities: Iterable[Entity]) -> None:
        """Keep these names (the model's, after the lift) for later items."""
        if self.size <= 0:
            return
        for e in entities:
            self._keep(e.text, (e.label, e.canonical))
            words = e.text.split()
            if e.label == "PERSON" and len(words) > 1:  # "Trump" after "Donald Trump"
                self._keep(words[-1], ("PERSON", e.canonical or e.text), surname=True)
        while len(self._names) > self.size:
            surface, _ = self._names.popitem(last=False)
            self._surnames.discard(surface)
            first = _WORD.match(surface)
            if first is not None:
                group = self._by_first.get(first.group())
                if group is not None:
                    group.discard(surface)
                    if not group:
                        del self._by_first[first.group()]

    def recall(self, surface: str) -> Recalled | None:
        """What the memory knows of ``surface``; ``None`` if nothing or ambiguous."""
        known = self._names.get(surface)
        return known if known is not None and known[0] else None

    def person_named(self, surname: str) -> str | None:
        """The full name a remembered person's ``surname`` stands for ("" if two people
        share it); ``None`` unless ``surname`` is remembered as a person's surname."""
        known = self._names.get(surname)
        if surname not in self._surnames or known is None or known[0] != "PERSON":
            return None
        return known[1]

    def _keep(self, surface: str, new: Recalled, *, surname: bool = False) -> None:
        """Remember one name. A person's surname outweighs the model's other labels for
        the lone word ("Trump" ORG); one label with two canonical names keeps the label
        only; two labels make the name ambiguous (not found again)."""
        if not _rememberable(surface):
            return
        known = self._names.get(surface)
        if known is None:
            first = _WORD.match(surface)
            if first is None:
                return
            self._by_first.setdefault(first.group(), set()).add(surface)
        elif surface in self._surnames and not surname and (new[0] != "PERSON" or not new[1]):
            new = known  # the lone word again, however labelled: still that person
        elif known[0] == new[0] and known[1] != new[1]:
            new = (new[0], "")  # "Donald Trump", then "Melania Trump": a Trump, no canonical
        elif known != new and not (surname and known[0] not in ("PERSON", "")):
            new = ("", "")
        if surname:
            self._surnames.add(surface)
        self._names[surface] = new
        self._names.move_to_end(surface)

    def find(self, text: str, start: int = 0) -> Iterator[Entity]:
        """Remembered names in ``text[start:]``: longest first, whole words, case-sensitive."""
        by_first, names = self._by_first, self._names
        taken = start
        for word in _WORD.finditer(text, start):
            begin = word.start()
            if begin < taken:
                continue
            surfaces = by_first.get(word.group())
            if not surfaces:
                continue
            for surface in sorted(surfaces, key=len, reverse=True):
                end = begin + len(surface)
                if text.startswith(surface, begin) and not (
                    end < len(text) and text[end].isalnum()
                ):
                    label, canonical = names[surface]
                    if label and not inside_longer_name(text, begin, end):
                        yield Entity(surface, label, begin, end, canonical=canonical)
                    taken = end
                    break


def _rememberable(surface: str) -> bool:
    """A capitalised name of two letters or more that is not a common word."""
    return (
        len(surface) >= 2
        and surface[0].isupper()
        and surface not in _NOT_NAMES
        and "\n" not in surface
        and (begin := _WORD.match(surface)) is not None
        and begin.start() == 0
    )
