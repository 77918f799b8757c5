"""What the end-to-end benchmark feeds the pipeline: news texts and watch-list rules.

Role: inputs of :mod:`bench.e2e`, built at run time, deterministic for a seed.

- :func:`news_texts`: (title, summary) pairs from real Reuters/AP-style sentences (the
  MSR paraphrase corpus, ``../shared/data/dedupe-dev/msrp/``, never committed; the seed
  feed's items without it). Text ``k`` is sentence ``k`` as the title and the sentences
  ``k + n/7`` and ``k + 3n/7 + 1`` (mod ``n``) as the summary (~60 words an item, like a
  wire summary). Those offsets differ pairwise by six distinct amounts, so no two texts
  share more than one sentence: every text is its own story, and a run's last phase gets
  as many fresh stories (and alerts) as its first. (Offsets of a third and two thirds, used
  before, made text ``k + n/3`` the same three sentences as text ``k``: every text past the
  3,648th re-published an earlier story, so later phases raised few alerts.) The corpus
  keeps paraphrase pairs side by side: neighbouring titles sometimes tell the same story,
  as two outlets would.
- :func:`watch_rules`: ``count`` rules in YAML-ready form (id, query text) and the term
  sets they use: the *watch-list* mix of :mod:`bench.matching` (names, topics, phrases,
  term sets, ``NOT``, ``NEAR``, prefixes, ``title:``, entity fields, 1 % ``outlets``), as
  query text, plus a fraction of *targeted* rules (a name and a topic word that appear
  together in one of the texts about to be published) so that alerts really fire.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from bench.matching import MSRP, load_items, vocabulary, watch_list_queries
from monitor.items import Item
from workers.query import parse_query

_CAPITALISED = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]{2,})\b")
_TOPIC = re.compile(r"\b([a-z]{5,})\b")
_STOP = frozenset(
    {"about", "after", "again", "against", "their", "there", "these", "those", "which"}
    | {"while", "would", "could", "should", "where", "being", "other", "first", "since"}
    | {"years", "under", "between", "during", "before"}
)


def news_texts() -> tuple[list[tuple[str, str]], str]:
    """News (title, summary) pairs, and where they came from."""
    if not MSRP.exists():
        items, source = load_items(10_000)
        return [(item.title, item.summary) for item in items], source
    lines = MSRP.read_text(encoding="utf-8-sig").splitlines()[1:]
    sentences = list(dict.fromkeys(line.split("\t")[1] for line in lines if "\t" in line))
    return compose_texts(sentences), f"MSR paraphrase corpus ({len(sentences)} news sentences)"


def compose_texts(sentences: Sequence[str]) -> list[tuple[str, str]]:
    """One (title, summary) text per sentence; no two texts share more than one sentence."""
    n = len(sentences)
    first, second = n // 7, 3 * n // 7 + 1
    gaps = {d % n for d in (first, second, second - first)}
    if len(gaps | {n - d for d in gaps}) < 6:  # two texts would share two sentences
        raise ValueError(f"{n} sentences are too few to compose distinct texts")
    return [
        (sentences[k], f"{sentences[(k + first) % n]} {sentences[(k + second) % n]}")
        for k in range(n)
    ]


def _items(texts: Sequence[tuple[str, str]]) -> list[Item]:
    return [
        Item(key=str(i), feed_url="bench:", feed_name="bench", url="", title=t, summary=s)
        for i, (t, s) in enumerate(texts)
    ]


def watch_rules(
    count: int,
    texts: Sequence[tuple[str, str]],
    upcoming: int,
    *,
    targeted: float = 0.03,
    seed: int = 7,
) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """``count`` rules as (id, query) and their term sets.

    ``upcoming``: how many of ``texts`` (from the first) the run will publish; the
    targeted rules are drawn from those.
    """
    rng = random.Random(seed)
    vocab = vocabulary(_items(texts[: max(upcoming, 2000)]))
    query, term_sets = watch_list_queries(vocab, rng)
    every = round(1 / targeted) if targeted > 0 else 0
    rules: list[tuple[str, str]] = []
    for index in range(count):
        targeted_rule = every and index % every == every // 2
        text = (_targeted(rng, texts[: max(upcoming, 1)]) if targeted_rule else None) or query()
        parse_query(text, term_sets=term_sets)  # a generated rule must be valid
        rules.append((f"w{index}", text))
    return rules, term_sets


def _targeted(rng: random.Random, texts: Sequence[tuple[str, str]]) -> str | None:
    """A name and a topic word seen together in one upcoming text (it will match)."""
    for _ in range(20):
        title, summary = rng.choice(texts)
        text = f"{title} {summary}"
        names = _CAPITALISED.findall(text)
        topics = [w for w in _TOPIC.findall(text) if w not in _STOP]
        if names and topics:
            return f"{rng.choice(names)} AND {rng.choice(topics)}"
    return None
