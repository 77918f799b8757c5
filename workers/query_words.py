"""Words of a text and their comparison keys: the vocabulary rules and items share.

Role: :func:`tokenize` splits a field into :class:`Token` s with character offsets;
every token carries two keys, computed once per distinct word (cached):

- ``form`` (:func:`fold`): case-folded, accents removed, ``’`` read as ``'``. Exact
  terms (``=aids``) and prefixes (``sanction*``) compare it; entity names too.
- ``key`` (:func:`word_key`): the form, through the irregular-forms table of
  :mod:`workers.lemmas` (``sought`` -> ``seek``), then the Snowball English stemmer
  (``weapons`` -> ``weapon``). Plain terms compare it.

Invariants: ``text[token.start:token.end]`` is the word as written; tokens are in text
order and never overlap; keys depend on the word alone (not on its neighbours).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from typing import NamedTuple

import snowballstemmer

from workers.lemmas import lemma

__all__ = ["Token", "fold", "name_key", "tokenize", "word_key"]

_MARKS = "\u0300-\u036f"  # combining accents, in case a text is not NFC
# A letter or digit, then letters, digits and combining marks; an apostrophe may join
# two such runs. (Unrolled so that the regex engine does not backtrack per character.)
_RUN = rf"[^\W_][^\W_{_MARKS}]*(?:[{_MARKS}]+[^\W_{_MARKS}]*)*"
_WORD_RE = re.compile(rf"{_RUN}(?:['’]{_RUN})*")
_BREAK_RE = re.compile(r"[.,;:!?…()\[\]{}—]")
_stemmers = threading.local()  # snowballstemmer objects keep state: one per thread


class Token(NamedTuple):
    """A word of a text: its keys (see the module docstring) and span ``[start, end)``.

    ``broken`` says that clause or sentence punctuation (``. , ; : ! ? … ( ) [ ] —``)
    stands between this word and the one before it; a phrase does not match across
    such a break unless the query's phrase has one in the same place. A named tuple
    rather than a frozen dataclass: an item has ~60 of them and tuples are built faster.
    """

    key: str
    start: int
    end: int
    broken: bool = False
    form: str = ""


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into words with their character offsets.

    A word is a run of Unicode letters and digits, possibly joined by an apostrophe
    (``O'Brien``, ``didn’t``). Hyphens, dots and other punctuation separate words:
    ``pro-Russian`` is ``pro`` + ``Russian``, ``U.S.`` is ``U`` + ``S``. A possessive
    ``'s``/``’s`` is left out of the word and its span: ``Russia’s`` gives ``Russia``.
    """
    tokens: list[Token] = []
    append, search, make = tokens.append, _BREAK_RE.search, tuple.__new__
    previous_end = 0
    for found in _WORD_RE.finditer(text):
        start, end = found.span()
        broken = bool(tokens) and search(text, previous_end, start) is not None
        if text[end - 1] in "sS" and end - start > 2 and text[end - 2] in "'’":
            end -= 2
        form, key = _keys(text[start:end])
        # tuple.__new__ skips the named tuple's Python-level __new__: tokenizing is
        # the one per-item cost every rule set pays.
        append(make(Token, (key, start, end, broken, form)))
        previous_end = end
    return tokens


@lru_cache(maxsize=100_000)
def fold(word: str) -> str:
    """Case-folded, accents removed, typographic apostrophe made plain."""
    return strip_marks(word.casefold().replace("’", "'"))


def strip_marks(text: str) -> str:
    """``text`` decomposed (NFKD) without its combining marks: ``Xí`` → ``Xi``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def word_key(word: str) -> str:
    """The comparison key of a word: folded, irregular forms lemmatised, English stem.

    Snowball conflates more than plurals: ``aide``/``aides`` -> ``aid``,
    ``generally`` -> ``general``; it keeps ``Russia``/``Russian`` and ``China``/
    ``Chinese`` apart.
    """
    return _keys(word)[1]


@lru_cache(maxsize=200_000)
def _keys(word: str) -> tuple[str, str]:
    form = fold(word)
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return form, str(stemmer.stemWord(lemma(form)))


def name_key(name: str) -> str:
    """How entity names compare: folded words joined by one space (``U.S.`` = ``u s``)."""
    return " ".join(token.form for token in tokenize(name))
