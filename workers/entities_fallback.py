"""The model-free entity extractor: capitalised word sequences, typed by the gazetteer.

Role: used by :func:`workers.entities.load_extractor` when no spaCy model loads, so a
worker without a model still gives rules and alerts the obvious names.

Input: plain text (``title + "\\n" + summary``). Output: :class:`~workers.model.Entity`
values in document order, every mention kept, with ``text[e.start:e.end] == e.text``.

How a name is found (English news text):

- A candidate is a run of capitalised words separated by single spaces; "of", "de",
  "van", "bin", … may join two capitalised words ("Bank of England"), never end a name.
  A possessive ("Putin’s") ends the run and is cut off.
- Capitals are only evidence where English does not capitalise anyway: a word at the
  start of a sentence, after an opening quote, or anywhere in a Title Case line is kept
  only if the gazetteer knows it (:mod:`workers.gazetteer`: countries, demonyms, big
  cities, news organisations) or it is capitalised mid-sentence elsewhere in the text.
  Common words ("The", "However", months, days) never start a name.
- Job titles split a run: "National Security Adviser Jake Sullivan" gives
  ``Jake Sullivan``; a name right after a title ("spokesman Zhao Lijian",
  "President Xi Jinping") is labelled ``PERSON``.
- Labels: the gazetteer's ("US" GPE, "Chinese" NORP, "Reuters" ORG, "Beijing" GPE),
  ``PERSON`` as above, else ``MISC``. The extractor then applies its
  :class:`~workers.entities_lift.Lift` (aliases, watched names, canonical names,
  salience), like the spaCy extractor.

It says it is a fallback: its ``name`` is ``"fallback"`` and
:func:`workers.entities.load_extractor` logs ``ner_model_missing`` once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from workers.entities_lift import Lift
from workers.gazetteer import Name, base_gazetteer
from workers.model import Entity

__all__ = ["FallbackExtractor", "extract"]


def _names(block: str) -> frozenset[str]:
    """``|``- or line-separated names."""
    return frozenset(name.strip() for name in block.replace("\n", "|").split("|")) - {""}


def _words(block: str) -> frozenset[str]:
    return frozenset(block.split())


def _known(word: str) -> Name | None:
    """The gazetteer's entry for ``word`` (countries, demonyms, places, organisations)."""
    return base_gazetteer().names.get(word)


# Capitalised at the start of a sentence, never the start of a name.
_COMMON = _words(
    """
    a an the this that these those it its he she they we i you his her their our my your
    in on at as but and or if when while after before since until for from with without by
    to of is are was were be been has have had do does did not no yes so then there here
    what which who whom whose why how where all some any each every another other more most
    many much such also only just even still yet now today yesterday tomorrow however
    meanwhile according despite although though because once both either neither nor
    monday tuesday wednesday thursday friday saturday sunday january february march april
    june july august september october november december
    """
)
# Words that introduce a person's name ("spokesman Zhao Lijian", "President Xi").
_TITLES = _words(
    """
    president vice prime minister secretary adviser advisor spokesman spokeswoman
    spokesperson chancellor senator sen rep representative governor mayor king queen prince
    princess pope general gen admiral colonel col ambassador envoy diplomat chairman
    chairwoman ceo director premier leader commander judge justice mr mrs ms dr sir lord
    lady professor prof sheikh member minister-designate president-elect deputy chief
    """
)
_CONNECTORS = _words("of the de del della da do dos das du des van von der den la le al bin ibn")
_WORD = re.compile(r"(?:[A-Z]\.){2,}|[^\W\d_]+(?:[-’'][^\W\d_]+)*")
_OPENERS = frozenset('.!?\n:“"‘([—')
_POSSESSIVES = ("’s", "'s")


class FallbackExtractor:
    """The :class:`~workers.entities.EntityExtractor` used when no spaCy model loads."""

    name = "fallback"

    def __init__(self, lift: Lift | None = None) -> None:
        self.lift = lift

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        if self.lift is None:
            return [extract(text) for text in texts]
        return [self.lift.apply(text, extract(text)) for text in texts]


class _Tok:
    __slots__ = ("end", "loose", "start", "titled", "word")

    def __init__(self, start: int, end: int, word: str, loose: bool, titled: bool) -> None:
        self.start, self.end, self.word = start, end, word
        self.titled = titled  # in a Title Case line: its capital proves nothing
        self.loose = loose or titled  # starts a sentence or quote (or titled): same

    @property
    def cap(self) -> bool:
        return self.word[0].isupper()

    @property
    def bare(self) -> str:
        return self.word[:-2] if self.word.endswith(_POSSESSIVES) else self.word


def extract(text: str) -> list[Entity]:
    """Entities of one text, in document order (see the module docstring)."""
    toks = _tokens(text)
    known = {t.bare for t in toks if t.cap and not t.loose and t.bare.lower() not in _COMMON}
    entities: list[Entity] = []
    for run, after_title in _runs(text, toks):
        for part in _split_unknown(run, known):
            entity = _entity(text, part, after_title)
            if entity is not None:
                entities.append(entity)
    return entities


def _tokens(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    title_case: dict[int, bool] = {}  # line start -> is that line in Title Case
    for match in _WORD.finditer(text):
        start, end = match.span()
        line = text.rfind("\n", 0, start) + 1
        if line not in title_case:
            title_case[line] = _is_title_case(text[line : _line_end(text, line)])
        gap = text[toks[-1].end : start] if toks else ""
        loose = not toks or any(ch in _OPENERS for ch in gap)
        toks.append(_Tok(start, end, match.group(), loose, title_case[line]))
    return toks


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end == -1 else end


def _is_title_case(line: str) -> bool:
    words = [w for w in _WORD.findall(line) if len(w) > 3]
    return len(words) >= 3 and sum(w[0].isupper() for w in words) >= 0.9 * len(words)


def _runs(text: str, toks: list[_Tok]) -> list[tuple[list[_Tok], bool]]:
    """Runs of capitalised words (connectors inside), split at titles.

    Each run comes with whether a title introduced it (the name of a person).
    """
    runs: list[tuple[list[_Tok], bool]] = []
    i = 0
    while i < len(toks):
        if not toks[i].cap:
            i += 1
            continue
        run = [toks[i]]
        j = i + 1
        while not run[-1].word.endswith(_POSSESSIVES) and j < len(toks):
            k = j  # skip up to two connectors, e.g. "Republic of the Congo"
            while k < len(toks) and k - j < 2 and toks[k].word in _CONNECTORS:
                k += 1
            if k >= len(toks) or not toks[k].cap or toks[j].word == "the":
                break
            if not all(
                _spaced(text, a, b) for a, b in zip(toks[j - 1 : k], toks[j : k + 1], strict=True)
            ):
                break
            run.extend(toks[j : k + 1])
            j = k + 1
        after_title = (
            i > 0 and toks[i - 1].word.lower() in _TITLES and _spaced(text, toks[i - 1], toks[i])
        )
        runs.extend(_split_titles(run, after_title))
        i = j
    return runs


def _spaced(text: str, a: _Tok, b: _Tok) -> bool:
    return text[a.end : b.start] in (" ", "\u00a0")


def _split_titles(run: list[_Tok], after_title: bool) -> list[tuple[list[_Tok], bool]]:
    """``[National Security Adviser Jake Sullivan]`` → ``[Jake Sullivan]`` (a person)."""
    last = max((n for n, t in enumerate(run) if t.word.lower() in _TITLES), default=-1)
    if last == -1:
        return [(run, after_title)]
    rest = run[last + 1 :]
    return [(rest, True)] if rest else []


def _split_unknown(run: list[_Tok], known: set[str]) -> list[list[_Tok]]:
    """Drop words whose capital proves nothing, and common words at the start.

    A sentence-initial word is kept when more capitalised words follow it ("Theresa
    May said"); alone ("Sending weapons …") it must be known from elsewhere.
    """
    parts: list[list[_Tok]] = [[]]
    for tok in run:
        unproven = (tok.titled or (tok.loose and len(run) == 1)) and not (
            tok.bare in known or _known(tok.bare) is not None
        )
        if unproven or (not parts[-1] and tok.word.lower() in _COMMON):
            parts.append([])
        else:
            parts[-1].append(tok)
    trimmed = (_trim(part) for part in parts)
    return [part for part in trimmed if part]


def _trim(part: list[_Tok]) -> list[_Tok]:
    while part and part[-1].word in _CONNECTORS:
        part = part[:-1]
    while part and (part[0].word in _CONNECTORS or part[0].word.lower() in _COMMON):
        part = part[1:]
    return part


def _entity(text: str, part: list[_Tok], after_title: bool) -> Entity | None:
    start, end = part[0].start, part[-1].end
    if part[-1].word.endswith(_POSSESSIVES):
        end -= 2
    span = text[start:end]
    if all(t.word.lower() in _COMMON for t in part) or not span:
        return None
    name = _known(span)
    if name is not None:
        label = name.label
    elif after_title:
        label = "PERSON"
    else:
        label = "MISC"
    return Entity(span, label, start, end)
