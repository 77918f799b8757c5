"""Material update or cosmetic edit: has an item that came again said something new?

Role: the pure decision behind update alerts. :func:`material_change` compares the
stored version of an item with the version that arrived, with the entities extracted
from each, and returns a reason for people when the change is material, else ``None``.

Material: the headline says something else (a content word added, removed or replaced
by another word, a negation gained or lost); a number is added, removed or changed
anywhere in title or summary ("3 dead" → "5 dead", "$2bn" → "$2.5bn"); an entity
(canonical name) is added or removed — and its words with it: a name the model finds in
one version only, whose words are in both, is the model's noise. Cosmetic: case,
punctuation, white space, stop words ("the", "a") and typo-level edits of a word
("Goverment" → "Government"); a rewording of the summary that keeps its numbers and
names.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from difflib import SequenceMatcher

from spacy.lang.en.stop_words import STOP_WORDS

from monitor.items import Item
from workers.model import Entity

__all__ = ["material_change"]

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATIONS = frozenset({"no", "not", "never", "nor", "none", "nobody", "nothing", "without"})
_NOISE = (frozenset(STOP_WORDS) - _NEGATIONS) | {"s", "t", "ll", "d", "re", "ve", "m"}
_TYPO_RATIO = 0.8  # characters two spellings of one word share, at least


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _content_words(text: str) -> list[str]:
    words = [w for w in _WORD.findall(_fold(text)) if w not in _NOISE]
    return [w for w in words if not _NUMBER.fullmatch(w)]  # numbers are compared on their own


def _numbers(text: str) -> Counter[str]:
    return Counter(match.replace(",", "") for match in _NUMBER.findall(_fold(text)))


def _typo(old: str, new: str) -> bool:
    return SequenceMatcher(None, old, new).ratio() >= _TYPO_RATIO


def _headline_change(old: str, new: str) -> bool:
    before, after = _content_words(old), _content_words(new)
    for op, i1, i2, j1, j2 in SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op != "replace" or i2 - i1 != j2 - j1:
            return True  # a word added or removed
        if not all(_typo(a, b) for a, b in zip(before[i1:i2], after[j1:j2], strict=True)):
            return True
    return False


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def material_change(
    old_item: Item,
    old_entities: Sequence[Entity],
    new_item: Item,
    new_entities: Sequence[Entity],
) -> str | None:
    """Why the new version matters ("headline changed: …; numbers: …"), or None."""
    reasons = []
    if _headline_change(old_item.title, new_item.title):
        reasons.append(f"headline changed: {_short(old_item.title)!r} → {_short(new_item.title)!r}")
    old_numbers = _numbers(f"{old_item.title}\n{old_item.summary}")
    new_numbers = _numbers(f"{new_item.title}\n{new_item.summary}")
    if old_numbers != new_numbers:
        gone = sorted((old_numbers - new_numbers).elements())
        added = sorted((new_numbers - old_numbers).elements())
        parts = [f"-{n}" for n in gone] + [f"+{n}" for n in added]
        reasons.append("numbers " + " ".join(parts))
    old_text = _fold(f"{old_item.title}\n{old_item.summary}")
    new_text = _fold(f"{new_item.title}\n{new_item.summary}")
    old_names = {e.name for e in old_entities}
    new_names = {e.name for e in new_entities}
    # A name the model found only in one version but whose words are in both texts is
    # the model's noise (an all-caps headline, say), not an edit.
    added = sorted(
        e.name for e in new_entities if e.name not in old_names and _fold(e.text) not in old_text
    )
    gone = sorted(
        e.name for e in old_entities if e.name not in new_names and _fold(e.text) not in new_text
    )
    if added or gone:
        parts = [f"+{n}" for n in dict.fromkeys(added)] + [f"-{n}" for n in dict.fromkeys(gone)]
        reasons.append("entities " + ", ".join(parts))
    return "; ".join(reasons) or None
