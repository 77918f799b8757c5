"""Matching benchmark: items/s for 1, 100 and 10,000 rules, prefiltered vs every rule.

Usage::

    .venv/bin/python -m bench.matching [--items N] [--seed S] [--json]

Items: real news sentences from the MSR paraphrase corpus
(``../shared/data/dedupe-dev/msrp/msr_paraphrase_data.txt``, read at run time, never
committed): one sentence is a title, the next two its summary (~55 words an item, like
a wire summary). Without that file the 15 items of ``seeds/feeds/world.xml`` are used.

Rules, two mixes generated with a fixed seed from the items' own vocabulary:

- ``adversarial`` (the stress test): words ranked 150 to 6,000 by frequency, one in ten
  each ``a``, ``a AND b``, ``"a b"``, ``a AND (b OR c)``, ``a -b``, ``prefix*``,
  ``a NEAR/5 b``, ``(a OR b) AND c AND NOT d``, ``=a``, ``"a b"~3``; a lone term from
  the rarer two thirds; 1 % ``outlets >= 2 within 60m`` (no anchor: every item
  evaluates it). It matches ~27 rules an item.
- ``watch-list`` (what analysts write, like ``docs/rules.md``): 2-4 clauses each, on
  names (capitalised words seen inside sentences), topic words, phrases and 50 term
  sets of 5 topic words, with ``OR``, ``NOT``, ``NEAR``, prefixes, ``title:`` and
  entity fields (ORed with the word: the items carry no entities); 1 % ``Name AND
  outlets >= 2 within 60m``.

Times are CPU time of this process (``time.process_time``: steadier than wall time on a
shared machine); the prefiltered path is the best of three passes over the items.
Each configuration times ``RuleSet.match`` (tokenize once, prefilter, evaluate the
candidates) beside evaluating every rule on the same tokenized item
(``RuleSet.match_every_rule``), in the same run, and checks both give the same matches.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from bench.machine import cpu_model
from monitor.items import Item
from workers.match import RuleSet, document_of
from workers.query import parse_query, tokenize

ROOT = Path(__file__).resolve().parent.parent
MSRP = ROOT.parent / "shared" / "data" / "dedupe-dev" / "msrp" / "msr_paraphrase_data.txt"
SEEDS = ROOT / "seeds" / "feeds" / "world.xml"
SIZES = (1, 100, 10_000)
TARGET_MS = 1.0
_RESERVED = frozenset({"AND", "OR", "NOT", "NEAR", "OUTLETS"})


def load_items(limit: int) -> tuple[list[Item], str]:
    """News items, and where they came from."""
    if MSRP.exists():
        lines = MSRP.read_text(encoding="utf-8-sig").splitlines()[1:]
        sentences = list(dict.fromkeys(line.split("\t")[1] for line in lines if "\t" in line))
        items = [
            Item(
                key=str(i),
                feed_url="bench:",
                feed_name="bench",
                url="",
                title=title,
                summary=" ".join(sentences[i + 1 : i + 3]),
            )
            for i, title in enumerate(sentences[: 3 * limit : 3])
        ]
        return items[:limit], f"MSR paraphrase corpus ({len(sentences)} news sentences)"
    root = ET.parse(SEEDS).getroot()  # noqa: S314 - our own seed file
    items = [
        Item(
            key=str(i),
            feed_url="bench:",
            feed_name="bench",
            url="",
            title=entry.findtext("title") or "",
            summary=entry.findtext("description") or "",
        )
        for i, entry in enumerate(root.iter("item"))
    ]
    return items, f"seeds/feeds/world.xml ({len(items)} items; shared data not found)"


class Vocabulary(NamedTuple):
    """What generated rules are made of, all seen in the items."""

    words: list[str]  # topic words and names, by frequency rank 150-6,000
    pairs: list[tuple[str, str]]  # adjacent words, both in ``words``
    names: list[str]  # capitalised words not opening a sentence (names), by frequency
    topics: list[str]  # lower-case words, by frequency rank 150-3,000


def vocabulary(items: list[Item]) -> Vocabulary:
    """Topic words, names and adjacent word pairs seen in the items."""
    counts: Counter[str] = Counter()
    names: Counter[str] = Counter()
    pairs: list[tuple[str, str]] = []
    for item in items:
        text = f"{item.title} {item.summary}"
        tokens = tokenize(text)
        words = [text[t.start : t.end] for t in tokens]
        counts.update(w for w in words if w.isalpha() and len(w) > 2 and w.upper() not in _RESERVED)
        names.update(
            word
            for word, token in zip(words, tokens, strict=True)
            if word[0].isupper()
            and word.isalpha()
            and len(word) > 2
            and not token.broken
            and token.start > 0
            and word.upper() not in _RESERVED
        )
        pairs.extend(itertools.pairwise(words))
    ranked = [word for word, _ in counts.most_common(6_000)[150:]]
    vocab = set(ranked)
    topics = [w for w, _ in counts.most_common(3_000)[150:] if w.islower()]
    named = [w for w, n in names.most_common(2_000) if n >= 3 and not counts.get(w.lower())]
    return Vocabulary(ranked, [p for p in pairs if p[0] in vocab and p[1] in vocab], named, topics)


def adversarial_rules(count: int, vocab: Vocabulary, seed: int) -> RuleSet:
    """The stress mix: one- and two-word rules over topic words (many matches)."""
    rng = random.Random(seed)
    words, pairs = vocab.words, vocab.pairs
    w = lambda: rng.choice(words)  # noqa: E731
    rare = lambda: rng.choice(words[len(words) // 3 :])  # noqa: E731 - a lone term is specific
    shapes = [
        lambda: rare(),
        lambda: f"{w()} AND {w()}",
        lambda: '"{} {}"'.format(*rng.choice(pairs)),
        lambda: f"{w()} AND ({w()} OR {w()})",
        lambda: f"{rare()} -{w()}",
        lambda: f"{rare()[:6]}*",
        lambda: f"{w()} NEAR/5 {w()}",
        lambda: f"({w()} OR {w()}) AND {w()} AND NOT {w()}",
        lambda: f"={rare()}",
        lambda: '"{1} {0}"~3'.format(*rng.choice(pairs)),
    ]
    rules = []
    for index in range(count):
        text = "outlets >= 2 within 60m" if index % 100 == 99 else rng.choice(shapes)()
        rules.append((f"r{index}", parse_query(text)))
    return RuleSet(rules)


def watch_list_queries(
    vocab: Vocabulary, rng: random.Random
) -> tuple[Callable[[], str], dict[str, list[str]]]:
    """A generator of realistic watch-list queries (2-4 clauses) and their term sets.

    Like the examples of ``docs/rules.md``: a name (a country, a person, a company)
    with a topic, an ``OR`` of alternatives, a term set, now and then a ``NOT``, a
    phrase, ``NEAR``, a prefix, a ``title:`` or an entity field (``gpe:``, ``person:``
    ORed with the word: the benchmark's items carry no entities). Shared with
    ``bench/e2e_data.py``.
    """
    names, topics, pairs = vocab.names, vocab.topics, vocab.pairs
    term_sets = {f"t{i}": rng.sample(topics, 5) for i in range(50)}
    n = lambda: rng.choice(names)  # noqa: E731
    t = lambda: rng.choice(topics)  # noqa: E731
    s = lambda: f"@t{rng.randrange(50)}"  # noqa: E731
    shapes: list[Callable[[], str]] = [
        lambda: f"{n()} AND ({t()} OR {t()})",
        lambda: f"{n()} AND {s()}",
        lambda: '"{} {}" AND {}'.format(*rng.choice(pairs), n()),
        lambda: f"({n()} OR {n()}) AND {t()} AND NOT {t()}",
        lambda: f"{n()} AND {t()} -{s()}",
        lambda: f"{n()} NEAR/5 ({t()} OR {t()})",
        lambda: f"(gpe:{n()} OR {n()}) AND {s()}",
        lambda: f"person:{n()} OR ({n()} AND {t()[:5]}*)",
        lambda: f"{n()} AND {n()} AND ({t()} OR {s()})",
        lambda: f"title:{n()} AND {s()} AND {t()}",
    ]
    counter = iter(range(1, 1 << 62))

    def query() -> str:  # every 100th: a story condition
        if next(counter) % 100 == 0:
            return f"{n()} AND outlets >= 2 within 60m"
        return rng.choice(shapes)()

    return query, term_sets


def watch_list_rules(count: int, vocab: Vocabulary, seed: int) -> RuleSet:
    """``count`` rules from :func:`watch_list_queries`."""
    query, term_sets = watch_list_queries(vocab, random.Random(seed))
    return RuleSet(
        [(f"w{index}", parse_query(query(), term_sets=term_sets)) for index in range(count)]
    )


MIXES = {"adversarial": adversarial_rules, "watch-list": watch_list_rules}


def run(items: list[Item], rules: RuleSet, naive_items: int) -> dict[str, float]:
    started = time.process_time()
    matched = candidates = 0
    for item in items:
        document = document_of(item)
        candidates += len(rules.prefilter.candidates(document))
        matched += len(rules.match_document(document))
    # The candidates are counted outside the timed path below; time match() alone,
    # best of three passes (the least disturbed by other work on a shared machine).
    passes = []
    for _ in range(3):
        started = time.process_time()
        for item in items:
            rules.match(item)
        passes.append((time.process_time() - started) / len(items))
    fast = min(passes)
    subset = items[:naive_items]
    started = time.process_time()
    naive_results = [rules.match_every_rule(document_of(item)) for item in subset]
    naive = (time.process_time() - started) / len(subset)
    for item, expected in zip(subset, naive_results, strict=True):
        assert rules.match(item) == expected, "prefilter changed a result"
    return {
        "rules": len(rules),
        "ms_per_item": fast * 1000,
        "items_per_s": 1 / fast,
        "every_rule_ms_per_item": naive * 1000,
        "every_rule_items_per_s": 1 / naive,
        "speedup": naive / fast,
        "candidates_per_item": candidates / len(items),
        "matches_per_item": matched / len(items),
    }


def machine() -> str:
    """The machine the figures come from, and how busy it was."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cpu = cpu_model(platform.machine())
    return (
        f"{platform.python_implementation()} {platform.python_version()}, {cpu}, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=2_000, help="items to match")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    items, source = load_items(args.items)
    vocab = vocabulary(items)
    rows = []
    for mix, make in MIXES.items():
        for size in SIZES:
            rules = make(size, vocab, args.seed)
            for item in items[:50]:  # warm the word-key caches, as a running worker has
                rules.match(item)
            naive_items = len(items) if size <= 100 else max(len(items) // 20, 10)
            rows.append({"mix": mix, **run(items, rules, naive_items)})
    if args.json:
        report = {"source": source, "items": len(items), "machine": machine(), "results": rows}
        print(json.dumps(report, indent=2))
        return
    words_per_item = sum(len(tokenize(f"{i.title} {i.summary}")) for i in items) / len(items)
    print(f"items: {len(items)} from {source}, {words_per_item:.0f} words an item")
    print(f"machine: {machine()}")
    print(
        f"{'mix':<12} {'rules':>6} {'items/s':>8} {'ms/item':>8} {'each rule: items/s':>19} "
        f"{'ms/item':>8} {'speed-up':>8} {'candidates':>10} {'matches':>8}"
    )
    for row in rows:
        print(
            f"{row['mix']:<12} {row['rules']:>6} {row['items_per_s']:>8.0f} "
            f"{row['ms_per_item']:>8.3f} {row['every_rule_items_per_s']:>19.0f} "
            f"{row['every_rule_ms_per_item']:>8.3f} {row['speedup']:>7.1f}x "
            f"{row['candidates_per_item']:>10.1f} {row['matches_per_item']:>8.2f}"
        )
    for row in rows:
        if row["rules"] == max(SIZES):
            last = row["ms_per_item"]
            verdict = "MET" if last < TARGET_MS else "MISSED"
            print(
                f"target ({row['mix']}): {verdict} 10,000 rules under {TARGET_MS:g} ms "
                f"per item ({last:.3f} ms)"
            )


if __name__ == "__main__":
    main()
