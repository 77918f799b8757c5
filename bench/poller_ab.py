"""A/B harness for the poller: two (or more) versions of the code, rounds interleaved.

Run::

    mkdir /tmp/old && git archive HEAD monitor | tar -x -C /tmp/old   # the old version
    .venv/bin/python -m bench.poller_ab /tmp/old . --reps 8 --changed

Why: on a shared 2-core machine a whole :mod:`bench.poller` run says more about the
neighbours than about a change. Here each variant (a folder holding a ``monitor``
package; ``uv:FOLDER`` runs it under uvloop when installed) runs in its own long-lived
process against one feed farm and one private Redis, sharing one key prefix and so one
schedule and state: the first variant does the first poll (every body parsed) once, then
the variants take turns, round by round, in alternating order. A variant's poller runs
(``Poller.run``) only during its own round; the round makes every feed due (``ZADD``)
and wakes the claim loop, and ends when the poller has counted one poll per feed. A
``--changed`` round first makes 5 % of the feeds (``--fraction``) publish 1–3 items, for
each variant anew. Reported per round and as medians: wall time, polls/s, the poller
process's CPU per poll (psutil, threads included) and its children's (the parse
process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

Result = tuple[float, float, float]  # wall s, poller CPU s, children CPU s


def _child(tree: str, redis_url: str, base: str, feeds: int, conn: Connection, first: bool) -> None:
    use_uvloop = tree.startswith("uv:")
    tree = tree.removeprefix("uv:")
    sys.path.insert(0, str(Path(tree).resolve()))
    import psutil

    import monitor
    import monitor.poller as poller_module
    from monitor.config import Config, FeedConfig, PollerSettings, RedisSettings
    from monitor.keys import Keys, feed_id
    from monitor.logs import configure_logging

    assert monitor.__file__ and monitor.__file__.startswith(str(Path(tree).resolve()))
    poller_module.SUMMARY_EVERY = 1e9  # type: ignore[attr-defined]  # the counts stay
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the process's stdout
    configure_logging("info", "json")
    config = Config(
        redis=RedisSettings(url=redis_url, prefix="ab:"),
        poller=PollerSettings(interval=3600.0, concurrency=80, per_host_concurrency=80),
        feeds=[
            FeedConfig(url=f"{base}/feeds/{n}.xml", name=f"wire {n}", interval=3600.0)
            for n in range(feeds)
        ],
    )
    keys = Keys("ab:")
    ids = [feed_id(feed.url) for feed in config.feeds]
    me = psutil.Process()

    def cpu() -> tuple[float, float]:
        own = me.cpu_times()
        children = 0.0
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                children += times.user + times.system
        return own.user + own.system, children

    async def main() -> None:
        poller = poller_module.Poller(config, redis_url, grace=5.0, name="ab")
        await poller.open()
        stats = poller._context.stats

        async def polled(count: int) -> None:
            while stats.polls < count:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.0005)

        async def session(measure: bool) -> Result | None:
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            await asyncio.sleep(0.3)  # synced and idle
            result = None
            if measure:
                target = stats.polls + feeds
                seconds, micros = await poller._context.client.time()
                cpu0, started = cpu(), time.perf_counter()
                due = dict.fromkeys(ids, seconds + micros / 1e6)
                await poller._context.client.zadd(keys.schedule(), due, xx=True)
                wake = poller._wake
                wake() if callable(wake) else wake.set()
                await polled(target)
                wall, cpu1 = time.perf_counter() - started, cpu()
                result = (wall, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])
            else:
                await polled(feeds)  # the first poll: the sync made every feed due
            stop.set()
            await task
            return result

        if first:
            await session(False)
        conn.send("ready")
        while await asyncio.to_thread(conn.recv) == "go":
            conn.send(await session(True))
        await poller.close()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _line(kind: str, tree: str, feeds: int, wall: float, own: float, children: float) -> str:
    return (
        f"{kind:8} {tree:30} wall {wall:.3f} s  {feeds / wall:7,.0f} polls/s  "
        f"CPU/poll {1000 * own / feeds:.3f} ms + children {1000 * children / feeds:.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poller_ab", description=__doc__)
    parser.add_argument("trees", nargs="+", help="folders holding a monitor package")
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=6, help="rounds of each kind per variant")
    parser.add_argument("--changed", action="store_true", help="also 5 %% rounds")
    parser.add_argument("--fraction", type=float, default=0.05)
    args = parser.parse_args(argv)
    from bench.feedfarm import start_farm
    from bench.poller import _advance
    from monitor.redis_server import RedisServer

    folder = Path(tempfile.mkdtemp(prefix="wirewatch-ab-"))
    server = RedisServer(folder / "redis", appendonly=False).start()
    farm, base = start_farm(args.feeds)
    context = multiprocessing.get_context("spawn")
    variants: list[tuple[str, Any, Connection]] = []
    results: dict[str, list[tuple[str, Result]]] = {tree: [] for tree in args.trees}
    kinds = ["304", "changed"] if args.changed else ["304"]
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()}", flush=True)
    try:
        for index, tree in enumerate(args.trees):
            parent, child = context.Pipe()
            process = context.Process(
                target=_child, args=(tree, server.url, base, args.feeds, child, index == 0)
            )
            process.start()
            variants.append((tree, process, parent))
            if parent.recv() != "ready":
                raise RuntimeError(f"variant {tree} did not start")
            parent.send("go")  # a warm-up round, not counted (connections, caches)
            parent.recv()
        for rep in range(args.reps):
            for kind in kinds:
                order = variants if rep % 2 == 0 else variants[::-1]
                for turn, (tree, _, conn) in enumerate(order):
                    if kind == "changed":
                        _advance(base, args.fraction, 0, args.feeds, 100 + 10 * rep + turn)
                    conn.send("go")
                    result: Result = conn.recv()
                    results[tree].append((kind, result))
                    print(_line(kind, tree, args.feeds, *result), flush=True)
        print(f"load {os.getloadavg()}")
        for kind in kinds:
            for tree in args.trees:
                rounds = [r for k, r in results[tree] if k == kind]
                medians = (statistics.median(r[i] for r in rounds) for i in range(3))
                print("median " + _line(kind, tree, args.feeds, *medians))
    finally:
        for _, process, conn in variants:
            with contextlib.suppress(OSError):
                conn.send("stop")
            process.join(20)
            if process.is_alive():
                process.kill()
        farm.kill()
        farm.join()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
