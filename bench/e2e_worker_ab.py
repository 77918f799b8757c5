"""Two source trees through :mod:`bench.e2e_worker`, alternately: old vs new in one run.

Run::

    .venv/bin/python -m bench.e2e_worker_ab --old /tmp/old --rounds 3 -- --batch 12 --inline 5

``--old`` is a copy of the tree to compare with (e.g. the working tree with some files
restored from ``git show HEAD:…``); the new tree is this one. Each round runs the
harness once in each tree, in alternating order, as separate processes (so each loads
its own code), with the harness of *this* tree copied into the old one, so both count
the same way. Printed: every run's table row, then the median per tree of each column.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _run(tree: Path, args: list[str]) -> tuple[list[str], list[float]]:
    done = subprocess.run(  # noqa: S603 - our interpreter, our module
        [sys.executable, "-m", "bench.e2e_worker", *args],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    header = lines.index(next(line for line in lines if line.lstrip().startswith("batch")))
    columns = lines[header].split()
    values = [float(x) for x in lines[header + 1].split()]
    return columns, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("harness", nargs="*", help="arguments for bench.e2e_worker (one variant)")
    args = parser.parse_args(argv)
    harness = [*args.harness, "--rounds", "1"]
    shutil.copy(HERE / "bench" / "e2e_worker.py", args.old / "bench" / "e2e_worker.py")
    trees = {"old": args.old, "new": HERE}
    results: dict[str, list[list[float]]] = {"old": [], "new": []}
    values: list[float] = []
    for round_ in range(args.rounds):
        order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
        for name in order:
            _, values = _run(trees[name], harness)
            results[name].append(values)
            print(f"round {round_} {name}: {values}", flush=True)
    # "CPU ms/item" and the like are two words in the header: name columns by position.
    print(
        "columns:",
        " | ".join(
            [
                "batch",
                "inline s",
                "CPU ms/item",
                "wall ms/item",
                "alerts",
                "trips/item",
                "cmds/item",
                "redis CPU ms/item",
            ][: len(values)]
        ),
    )
    for name, runs in results.items():
        medians = [statistics.median(column) for column in zip(*runs, strict=True)]
        print(f"{name}: " + "  ".join(f"{m:.2f}" for m in medians))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
