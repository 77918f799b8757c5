"""The ``about:`` clause: how well thresholds separate topics, and what it costs per item.

Usage::

    .venv/bin/python -m bench.semantic [--items N] [--json]

Quality: ``bench/data/semantic-topics.json`` holds 8 topics (``about:`` texts), each
with 4 *related* items (the topic in other words) and 4 *unrelated* ones that share its
names or words but not its subject (``China and Russia pledge food aid`` for
``China supplying weapons to Russia``). For each threshold it prints recall on the
related items, how many unrelated items pass, precision and F1 on the labelled pairs,
and the share of background items that pass: the first ``--items`` items of
``bench/matching.py`` (MSR paraphrase corpus news, a title and two sentences each),
against every topic — a stand-in for the false alarms per item of a day's wire.

Cost: CPU and wall time per item of :meth:`workers.match.RuleSet.match_document` for 100 word
rules (``bench/matching.py``'s watch-list mix), alone, with one ``about:`` rule (which
the prefilter cannot skip, so every item is embedded) and with eight (the item is
still embedded once), interleaved in the same run, best of three passes each.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.matching import load_items, machine, vocabulary, watch_list_queries
from monitor.items import Item
from workers.match import RuleSet, document_of
from workers.query import parse_query
from workers.semantic import DEFAULT_THRESHOLD, embed

TOPICS = Path(__file__).resolve().parent / "data" / "semantic-topics.json"
THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(10))


def quality(background: list[Item]) -> list[dict[str, float]]:
    """Per threshold: recall, unrelated passing, precision, F1, background pass rate."""
    topics = json.loads(TOPICS.read_text(encoding="utf-8"))["topics"]
    queries = embed([topic["about"] for topic in topics])
    related = np.concatenate(
        [embed(topic["related"]) @ queries[i] for i, topic in enumerate(topics)]
    )
    unrelated = np.concatenate(
        [embed(topic["unrelated"]) @ queries[i] for i, topic in enumerate(topics)]
    )
    noise = (embed([f"{item.title}\n{item.summary}" for item in background]) @ queries.T).ravel()
    rows = []
    for threshold in THRESHOLDS:
        hits, false = int((related >= threshold).sum()), int((unrelated >= threshold).sum())
        recall = hits / len(related)
        precision = hits / (hits + false) if hits + false else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "threshold": threshold,
                "recall": round(recall, 3),
                "unrelated_passing": false,
                "precision": round(precision, 3),
                "f1": round(f1, 3),
                "background_rate": round(float((noise >= threshold).mean()), 4),
            }
        )
    return rows


def cost(items: list[Item]) -> dict[str, dict[str, float]]:
    """CPU µs per item of ``RuleSet.match``: 100 word rules alone, with one ``about:``
    rule, and with the 8 ``about:`` rules of the topics (one embedding of the item)."""
    query, term_sets = watch_list_queries(vocabulary(items), random.Random(7))
    words = [(f"w{i}", parse_query(query(), f"w{i}", term_sets)) for i in range(100)]
    topics = json.loads(TOPICS.read_text(encoding="utf-8"))["topics"]
    abouts = [
        (f"a{i}", parse_query(f'about:"{topic["about"]}"', f"a{i}"))
        for i, topic in enumerate(topics)
    ]
    sets = {
        "words": RuleSet(words),
        "one_about": RuleSet([*words, *abouts[:1]]),
        "eight_about": RuleSet([*words, *abouts]),
    }
    cpu = dict.fromkeys(sets, float("inf"))
    wall = dict.fromkeys(sets, float("inf"))
    for _ in range(3):
        for name, rules in sets.items():  # interleaved: each pass times every variant
            start, started = time.process_time(), time.perf_counter()
            for item in items:
                rules.match_document(document_of(item))
            cpu[name] = min(cpu[name], time.process_time() - start)
            wall[name] = min(wall[name], time.perf_counter() - started)
    return {
        kind: {name: round(seconds / len(items) * 1e6, 1) for name, seconds in times.items()}
        for kind, times in (("cpu", cpu), ("wall", wall))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items, source = load_items(args.items)
    start = time.process_time()
    embed(["warm up: load the model"])
    load_seconds = time.process_time() - start
    result: dict[str, Any] = {
        "machine": machine(),
        "background": f"{len(items)} items from the {source}",
        "default_threshold": DEFAULT_THRESHOLD,
        "model_load_cpu_s": round(load_seconds, 2),
        "thresholds": quality(items),
        "cost_us_per_item": cost(items),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']}; background: {result['background']}")
    print(f"model load: {result['model_load_cpu_s']} s CPU; default threshold {DEFAULT_THRESHOLD}")
    print("threshold  recall  unrelated  precision  F1     background")
    for row in result["thresholds"]:
        print(
            f"{row['threshold']:9.2f}  {row['recall']:6.3f}  {row['unrelated_passing']:4d}/32"
            f"    {row['precision']:6.3f}  {row['f1']:5.3f}  {row['background_rate']:8.2%}"
        )
    for kind, costs in result["cost_us_per_item"].items():
        print(
            f"{kind} per item: 100 word rules {costs['words']} µs; with one about: rule "
            f"{costs['one_about']} µs; with 8 about: rules {costs['eight_about']} µs"
        )


if __name__ == "__main__":
    main()
