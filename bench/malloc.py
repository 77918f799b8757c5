"""NER per item with and without the worker's malloc tuning, alternately, in one run.

Run::

    .venv/bin/python -m bench.malloc                 # 6 rounds of 600 items each way
    .venv/bin/python -m bench.malloc --rounds 3 --items 300

Each round starts two fresh processes one after the other (who goes first alternates):
one with :func:`workers.malloc_tuning.keep_freed_memory` applied, one with
``WIREWATCH_MALLOC_TUNING=0``. Each loads the extractor a worker runs
(``load_extractor(NerSettings())``), warms it up, then extracts ``--items`` news items
(the end-to-end benchmark's texts) in batches of ``--batch`` from an empty cache, and
reports per item: wall time, user and kernel CPU time, minor page faults, and the
process's peak RSS. The summary gives the median of each column per variant and the
ratio of the medians. Only rows of one run are compared: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from bench.e2e_procs import machine
from workers.malloc_tuning import ENV, keep_freed_memory

COLUMNS = ("wall_ms", "user_ms", "sys_ms", "faults", "rss_mb")


def child(items: int, batch: int) -> dict[str, float]:
    """One variant's pass in this process (the parent set the environment)."""
    applied = keep_freed_memory()
    from bench.e2e_data import news_texts
    from monitor.config import NerSettings
    from workers.entities import SpacyExtractor, load_extractor

    texts = [f"{title}\n{summary}" for title, summary in news_texts()[0][: items + 20]]
    extractor = load_extractor(NerSettings())
    extractor.extract_many(texts[:20])  # warm up: first-call costs are not the question
    if isinstance(extractor, SpacyExtractor):
        extractor.clear_cache()
    texts = texts[20:]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        extractor.extract_many(texts[i : i + batch])
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    n = len(texts)
    return {
        "applied": float(applied),
        "wall_ms": 1000 * wall / n,
        "user_ms": 1000 * (after.ru_utime - before.ru_utime) / n,
        "sys_ms": 1000 * (after.ru_stime - before.ru_stime) / n,
        "faults": (after.ru_minflt - before.ru_minflt) / n,
        "rss_mb": after.ru_maxrss / 1024,
    }


def run_variant(tuned: bool, items: int, batch: int) -> dict[str, float]:
    env = os.environ | {ENV: "1" if tuned else "0"}
    done = subprocess.run(  # noqa: S603 - our interpreter, our module
        [
            sys.executable,
            "-m",
            "bench.malloc",
            "--child",
            "--items",
            str(items),
            "--batch",
            str(batch),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if bool(result["applied"]) != tuned:
        raise RuntimeError(f"tuning {'not ' if tuned else ''}applied in the {tuned=} process")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--batch", type=int, default=40, help="texts per extract_many call")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.items, args.batch)))
        return

    head = machine()
    print(
        f"machine: {head['cores']} cores, {head['cpu']}; load average {head['load']}\n"
        f"{args.rounds} rounds × {args.items} items, batches of {args.batch}, each variant "
        "a fresh process, order alternating\n"
    )
    print(f"{'round':>5} {'variant':8}" + "".join(f"{c:>9}" for c in COLUMNS))
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for round_no in range(args.rounds):
        order = (False, True) if round_no % 2 == 0 else (True, False)
        for tuned in order:
            row = run_variant(tuned, args.items, args.batch)
            runs[tuned].append(row)
            name = "tuned" if tuned else "default"
            print(f"{round_no + 1:>5} {name:8}" + "".join(f"{row[c]:9.2f}" for c in COLUMNS))
    medians = {t: {c: statistics.median(r[c] for r in runs[t]) for c in COLUMNS} for t in runs}
    print(f"\n{'median':>5} {'default':8}" + "".join(f"{medians[False][c]:9.2f}" for c in COLUMNS))
    print(f"{'':>5} {'tuned':8}" + "".join(f"{medians[True][c]:9.2f}" for c in COLUMNS))
    ratio = medians[False]["wall_ms"] / medians[True]["wall_ms"]
    print(
        f"\nNER per item, default / tuned (median wall): {ratio:.2f}× "
        f"({medians[False]['wall_ms']:.2f} → {medians[True]['wall_ms']:.2f} ms); "
        f"load average after {machine()['load']}"
    )


if __name__ == "__main__":
    main()
