"""Poller benchmark: one wirewatch poller against the naive feedparser loop, same run.

Run::

    .venv/bin/python -m bench.poller --feeds 1000
    .venv/bin/python -m bench.poller --feeds 10000
    .venv/bin/python -m bench.poller --quick          # a short smoke run

What runs, each in its own process:

- the **feed farm** (:mod:`bench.feedfarm`): N synthetic feeds of realistic size and
  shape over HTTP on 127.0.0.1, with ETag / Last-Modified and 304s;
- a private **redis-server** (:class:`monitor.redis_server.RedisServer`, unix socket,
  no AOF) in a temporary folder — never the Redis on 6379;
- the **naive loop** many scripts use: ``feedparser.parse(url, etag=…, modified=…)`` over
  the feeds, one after the other (feedparser fetches itself). It is slow, so it runs
  on ``--naive-sample`` feeds (500 by default; the output says so) of the same shapes,
  served by the same farm after the poller's (numbers N…N+sample−1), so that one
  side's rounds never change the other's feeds;
- one **wirewatch poller** (:class:`monitor.poller.Poller`, driven by ``Poller.run``)
  with its schedule and state in the private Redis; new items go to rq as in production
  (no workers run; the jobs stay queued). It logs JSON lines (``logging.level`` info) to a
  file, as it would to stdout in production.

A *round* is: the farm makes a fraction of the feeds publish 1–3 new items; every feed is
made due at one instant ``T`` in the shared schedule (``ZADD``; the poller notices it
through its own claim loop); the round ends when no feed is due and no lease is held,
i.e. every feed was claimed, polled and rescheduled. Rounds: a first poll (every body is
new and parsed), then ``--rounds`` times a 304 round (nothing changed) and a 5 % round
(``--changed``). The two sides take turns round by round — who goes first alternates —
so that both meet the (shared, noisy) machine as it is at that moment: a ratio from
sides run minutes apart moved between 2× and 4× with the machine's speed. Polls/s is
feeds / wall time; CPU is the poller process plus its
children (the parse process), sampled with psutil at ``T`` and at the end. Peak memory
is the kernel's high-water mark (``VmHWM``) of the poller process and of its parse
process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.feedfarm import Farm, start_farm
from bench.machine import cpu_model, versions
from monitor.config import Config, FeedConfig, PollerSettings, RedisSettings
from monitor.keys import Keys, feed_id
from monitor.redis_server import RedisServer, find_redis_server

TARGET_304 = 2000.0  # polls/s, one poller process
TARGET_RATIO = 5.0  # × the naive loop on the 5 % round
TARGET_RSS_MB = 300.0  # poller peak RSS for 10,000 feeds
FEED_INTERVAL = 3600.0  # the configured interval: no feed comes due by itself mid-run
START_DELAY = 1.2  # a round starts this long after the feeds are made due (see module doc)


@dataclass
class Round:
    """One measured round of one contender."""

    kind: str  # "first", "304" or "changed"
    feeds: int
    seconds: float
    cpu_s: float
    changed: int = 0  # feeds the farm changed before the round
    statuses: dict[str, int] = field(default_factory=dict)
    parsed: int = 0  # bodies parsed
    new_items: int = 0  # items found new (wirewatch) / entries read (naive)
    failed: int = 0
    farm_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # CPU used meanwhile by processes outside the benchmark

    @property
    def rate(self) -> float:
        return self.feeds / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_poll_ms(self) -> float:
        return 1000 * self.cpu_s / self.feeds if self.feeds else 0.0


@dataclass(frozen=True)
class Plan:
    feeds: int
    sample: int
    rounds: int
    changed: float
    concurrency: int
    per_host: int
    log_level: str


def _plan(kinds_after_first: int) -> list[str]:
    return ["first"] + ["304", "changed"] * kinds_after_first


# ---------------------------------------------------------------------------------------
# the farm's control endpoint


def _advance(base: str, fraction: float, first: int, count: int, seed: int) -> int:
    """Make ``fraction`` of feeds ``first…first+count-1`` publish 1–3 items; how many."""
    if fraction <= 0:
        return 0
    body = json.dumps({"fraction": fraction, "first": first, "count": count, "seed": seed})
    request = urllib.request.Request(  # noqa: S310 - our own farm on 127.0.0.1
        f"{base}/_advance", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return len(json.loads(response.read())["changed"])


def _fraction(kind: str, changed: float) -> float:
    return changed if kind == "changed" else 0.0


# ---------------------------------------------------------------------------------------
# the naive loop (its own process)


def _naive_child(base: str, plan: Plan, conn: Connection) -> None:
    """Runs one naive round per ``(kind, index)`` received, answers with its
    :class:`Round`; on ``None``, answers with its peak RSS (MB) and ends."""
    import feedparser  # here: the naive process pays its own import

    validators: dict[int, tuple[str | None, str | None]] = {}
    feeds = range(plan.feeds, plan.feeds + plan.sample)  # its own feeds (module docstring)
    while (command := conn.recv()) is not None:
        kind, index = command
        fraction = _fraction(kind, plan.changed)
        changed = _advance(base, fraction, plan.feeds, plan.sample, 1000 + index)
        statuses: Counter[str] = Counter()
        parsed = entries = failed = 0
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        for n in feeds:
            etag, modified = validators.get(n, (None, None))
            result = feedparser.parse(f"{base}/feeds/{n}.xml", etag=etag, modified=modified)
            status = result.get("status")
            statuses[str(status)] += 1
            if status == 200:
                parsed += 1
                entries += len(result.entries)
            elif status != 304:
                failed += 1
            validators[n] = (result.get("etag") or etag, result.get("modified") or modified)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        conn.send(
            Round(kind, plan.sample, seconds, cpu, changed, dict(statuses), parsed, entries, failed)
        )
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    conn.close()


class NaiveProcess:
    """The naive loop in its own process, one round at a time (interleaved with the
    poller's rounds, so that both see the machine as it is at that moment)."""

    def __init__(self, base: str, plan: Plan) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_naive_child, args=(base, plan, child), name="naive")
        self._process.start()
        child.close()

    def round(self, kind: str, index: int) -> Round:
        self._conn.send((kind, index))
        result: Round = self._conn.recv()
        return result

    def stop(self) -> float:
        """Ends the process; returns its peak RSS in MB."""
        try:
            self._conn.send(None)
            peak: float = self._conn.recv()
            return peak
        finally:
            self._process.join(30)


# ---------------------------------------------------------------------------------------
# the wirewatch poller (its own process)


def bench_config(base: str, plan: Plan, redis_url: str) -> Config:
    return Config(
        redis=RedisSettings(url=redis_url, prefix="bench:"),
        poller=PollerSettings(
            interval=FEED_INTERVAL,
            concurrency=plan.concurrency,
            per_host_concurrency=plan.per_host,
        ),
        feeds=[
            FeedConfig(url=f"{base}/feeds/{n}.xml", name=f"wire {n}", interval=FEED_INTERVAL)
            for n in range(plan.feeds)
        ],
    )


def _poller_child(base: str, plan: Plan, redis_url: str, log_path: str) -> None:
    # The poller logs as in production (JSON lines at info: a line per changed or failed
    # poll, a periodic summary), here to a file.
    sys.stdout = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - the process's stdout
    from monitor.logs import configure_logging
    from monitor.poller import Poller

    configure_logging(plan.log_level, "json")
    config = bench_config(base, plan, redis_url)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await Poller(config, redis_url, grace=5.0).run(stop)

    asyncio.run(main())


class PollerProcess:
    """The poller child, the schedule it shares with us, and round-by-round measuring."""

    def __init__(self, base: str, plan: Plan, server: RedisServer, folder: Path) -> None:
        self.base, self.plan, self.server = base, plan, server
        self.log_path = folder / "poller.jsonl"
        self.config = bench_config(base, plan, server.url)
        self.keys = Keys(self.config.redis.prefix)
        self.client = redis.Redis.from_url(server.url, decode_responses=True)
        self.ids = [feed_id(feed.url) for feed in self.config.feeds]
        self.process: BaseProcess | None = None
        self._log_offset = 0

    def start(self) -> None:
        # Put every feed in the schedule first, due far in the future, so the poller
        # starts idle and every round (the first too) starts the same way.
        from monitor.shared_schedule import SharedSchedule

        async def sync() -> None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.server.url, decode_responses=True)
            try:
                await SharedSchedule(client, self.keys).sync(self.config, lease=60.0)
            finally:
                await client.aclose()

        asyncio.run(sync())
        self._make_due(time.time() + 10**6)
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=_poller_child,
            args=(self.base, self.plan, self.server.url, str(self.log_path)),
            name="wirewatch-poller",
        )
        self.process.start()
        deadline = time.monotonic() + 60
        while b"poller_started" not in self._read_log_bytes():
            if not self.process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the poller did not start; see {self.log_path}")
            time.sleep(0.05)
        self._log_offset = self.log_path.stat().st_size

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.pid is not None
        return self.process.pid

    def _read_log_bytes(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def _make_due(self, at: float) -> None:
        for start in range(0, len(self.ids), 5000):
            chunk = self.ids[start : start + 5000]
            self.client.zadd(self.keys.schedule(), dict.fromkeys(chunk, at), xx=True)

    def _done(self, at: float) -> bool:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcount(self.keys.schedule(), "-inf", at + 0.5)
            pipe.hlen(self.keys.leases())
            due, leased = pipe.execute()
        return int(due) == 0 and int(leased) == 0

    def round(self, kind: str, index: int, farm_pid: int) -> Round:
        changed = _advance(self.base, _fraction(kind, self.plan.changed), 0, self.plan.feeds, index)
        seconds, micros = self.client.time()
        at = seconds + micros / 1e6 + START_DELAY  # the schedule runs on Redis's clock
        self._make_due(at)
        time.sleep(max(0.0, at - time.time()))
        cpu0, farm0, redis0 = _cpu_tree(self.pid), _cpu(farm_pid), _cpu(self.server.pid)
        busy0, own0 = _busy(), _cpu(os.getpid())
        timeout = at + 120 + self.plan.feeds * (0.3 if kind == "first" else 0.05)
        while not self._done(at):
            if time.time() > timeout or not (self.process and self.process.is_alive()):
                raise RuntimeError(f"round {kind} did not finish; see {self.log_path}")
            time.sleep(0.002)
        ended = time.time()
        cpu1, farm1, redis1 = _cpu_tree(self.pid), _cpu(farm_pid), _cpu(self.server.pid)
        busy1, own1 = _busy(), _cpu(os.getpid())
        result = Round(kind, self.plan.feeds, ended - at, cpu1 - cpu0, changed)
        result.farm_cpu_s, result.redis_cpu_s = farm1 - farm0, redis1 - redis0
        ours = result.cpu_s + result.farm_cpu_s + result.redis_cpu_s + own1 - own0
        result.other_cpu_s = max(0.0, busy1 - busy0 - ours)
        self._count(result, at)
        return result

    def _count(self, result: Round, at: float) -> None:
        """Per-round outcome counts: statuses from the feeds' state in Redis (an
        unchanged poll logs at debug only), items from the poller's info log lines."""
        with self.client.pipeline(transaction=False) as pipe:
            for feed in self.config.feeds:
                pipe.hmget(self.keys.feed(feed.url), "last_status", "last_polled")
            states = pipe.execute()
        statuses: Counter[str] = Counter()
        for status, polled in states:
            if polled is not None and float(polled) >= at - 1:
                statuses[str(status) if status else "failed"] += 1
        result.statuses = dict(statuses)
        time.sleep(0.2)  # a changed poll logs its line just after it is rescheduled
        with self.log_path.open("rb") as handle:
            handle.seek(self._log_offset)
            data = handle.read()
        self._log_offset += len(data)
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = event.get("event")
            if name == "feed_polled":
                result.new_items += int(event.get("new") or 0)
                result.parsed += 0 if event.get("unchanged") else 1
            elif name == "feed_poll_failed":
                result.failed += 1

    def peak_rss_mb(self) -> dict[str, float]:
        """VmHWM of the poller and of each of its children (the parse process)."""
        out = {"poller": _hwm_mb(self.pid)}
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                out[f"child {child.pid} ({_role(child)})"] = _hwm_mb(child.pid)
        return out

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            os.kill(self.pid, signal.SIGTERM)
            self.process.join(30)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.client.close()


def _cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _busy() -> float:
    """CPU seconds the whole machine has spent busy (not idle) since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _cpu_tree(pid: int) -> float:
    """CPU seconds of a process and all its live descendants."""
    total = _cpu(pid)
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            total += _cpu(child.pid)
    return total


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _role(process: psutil.Process) -> str:
    try:
        cmd = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    return "forkserver" if "forkserver" in cmd else "parse process"


# ---------------------------------------------------------------------------------------
# the report


def machine() -> str:
    model = cpu_model()
    packages = versions(("aiohttp", "feedparser", "redis", "rq"))
    try:
        server = subprocess.run(  # noqa: S603 - the redis-server binary we run anyway
            [find_redis_server(), "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[2]
    except (OSError, IndexError):
        server = "?"
    return (
        f"machine: {model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}\n"
        f"python:  {platform.python_implementation()} {platform.python_version()}; {packages}; "
        f"redis-server {server}"
    )


def farm_shape(feeds: int) -> str:
    farm = Farm(feeds)
    sample = range(min(feeds, 200))
    sizes = sorted(len(farm.body(n)) / 1024 for n in sample)
    items = [farm.feeds[n].items for n in sample]
    atom = sum(farm.feeds[n].atom for n in sample)
    return (
        f"feeds: {min(items)}–{max(items)} items, body {sizes[0]:.0f}–{sizes[-1]:.0f} KB "
        f"(median {statistics.median(sizes):.0f} KB), {100 * atom // len(sample)} % Atom, "
        "the rest RSS 2.0; no gzip"
    )


def _median(rounds: list[Round], kind: str) -> Round | None:
    chosen = sorted((r for r in rounds if r.kind == kind), key=lambda r: r.rate)
    return chosen[len(chosen) // 2] if chosen else None


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def report(
    plan: Plan, naive: list[Round], naive_rss: float, wire: list[Round], rss: dict[str, float]
) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    add = lines.append
    add("")
    add("per round (polls/s = feeds / wall seconds; CPU = process + children):")
    head = f"  {'who':<10} {'round':<8} {'feeds':>6} {'changed':>7} {'wall s':>8} {'polls/s':>9} "
    add(head + f"{'CPU ms/poll':>11} {'parsed':>6} {'new':>6}  statuses   [farm/redis/other CPU s]")
    for who, rounds in (("naive", naive), ("wirewatch", wire)):
        for r in rounds:
            extra = (
                f"  [{r.farm_cpu_s:.2f}/{r.redis_cpu_s:.2f}/{r.other_cpu_s:.2f}]"
                if who == "wirewatch"
                else ""
            )
            add(
                f"  {who:<10} {r.kind:<8} {r.feeds:>6} {r.changed:>7} {r.seconds:>8.2f} "
                f"{_fmt_rate(r.rate):>9} {r.cpu_per_poll_ms:>11.3f} {r.parsed:>6} "
                f"{r.new_items:>6}  {r.statuses}{extra}"
            )
    summary: dict[str, Any] = {}
    add("")
    add(
        f"summary (median of {plan.rounds} round(s), the two sides interleaved; the naive "
        f"loop on {plan.sample:,} feeds of its own — over {plan.feeds:,} it would take too long):"
    )
    add(f"  {'':<32} {'naive':>12} {'wirewatch':>12} {'ratio':>8}")
    for kind, label in (
        ("first", "first poll (every body new)"),
        ("304", "304 round (nothing changed)"),
        ("changed", f"{plan.changed:.0%} changed, 1–3 new items"),
    ):
        a, b = _median(naive, kind), _median(wire, kind)
        if a is None or b is None:
            continue
        ratio = b.rate / a.rate if a.rate else 0.0
        summary[kind] = {
            "naive_polls_s": a.rate,
            "wirewatch_polls_s": b.rate,
            "ratio": ratio,
            "naive_cpu_ms_per_poll": a.cpu_per_poll_ms,
            "wirewatch_cpu_ms_per_poll": b.cpu_per_poll_ms,
        }
        add(f"  {label + ', polls/s':<32} {_fmt_rate(a.rate):>12} {_fmt_rate(b.rate):>12} "
            f"{ratio:>7.2f}×")  # fmt: skip
        add(f"  {'  CPU ms per poll':<32} {a.cpu_per_poll_ms:>12.3f} "
            f"{b.cpu_per_poll_ms:>12.3f}")  # fmt: skip
    total = sum(rss.values())
    add(f"  peak RSS (VmHWM), MB: naive process {naive_rss:.0f}; wirewatch poller "
        f"{rss.get('poller', 0):.0f}, with its children {total:.0f} ({rss})")  # fmt: skip
    summary["peak_rss_mb"] = rss
    summary["naive_peak_rss_mb"] = naive_rss
    add("")
    add("targets:")
    r304, rchg = summary.get("304", {}), summary.get("changed", {})
    checks = [
        (
            f"304 round ≥ {TARGET_304:,.0f} polls/s (one poller)",
            r304.get("wirewatch_polls_s", 0) >= TARGET_304,
            f"{r304.get('wirewatch_polls_s', 0):,.0f} polls/s",
        ),
        (
            f"{plan.changed:.0%} round ≥ {TARGET_RATIO:g}× the naive loop",
            rchg.get("ratio", 0) >= TARGET_RATIO,
            f"{rchg.get('ratio', 0):.2f}×",
        ),
        (
            f"poller peak RSS ≤ {TARGET_RSS_MB:.0f} MB"
            + ("" if plan.feeds >= 10_000 else " (the target is for 10,000 feeds)"),
            rss.get("poller", 0) <= TARGET_RSS_MB,
            f"{rss.get('poller', 0):.0f} MB",
        ),
    ]
    for label, ok, got in checks:
        add(f"  {'MET   ' if ok else 'MISSED'} {label}: {got}")
    summary["targets"] = {label: ok for label, ok, _ in checks}
    return "\n".join(lines), summary


# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.poller", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--feeds", type=int, default=1000, help="feeds the poller polls")
    parser.add_argument(
        "--naive-sample", type=int, default=500, help="feeds the naive loop polls (a sample)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="304 and changed rounds each")
    parser.add_argument("--changed", type=float, default=0.05, help="fraction changed per round")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=80,
        help="poller.concurrency and poller.per_host_concurrency (every feed is on one host)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument("--quick", action="store_true", help="a short run: ≤200 feeds, 1 round")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    feeds = min(args.feeds, 200) if args.quick else args.feeds
    plan = Plan(
        feeds=feeds,
        sample=min(feeds, 100 if args.quick else args.naive_sample),
        rounds=1 if args.quick else args.rounds,
        changed=args.changed,
        concurrency=args.concurrency,
        per_host=args.concurrency,
        log_level=args.log_level,
    )
    print(f"wirewatch poller benchmark — {feeds:,} feeds", flush=True)
    print(machine())
    print(farm_shape(feeds))
    print(
        f"poller: one process, poller.concurrency={plan.concurrency}, "
        f"per_host_concurrency={plan.per_host} (all feeds on 127.0.0.1), logging "
        f"{plan.log_level}/json to a file; Redis: private redis-server, unix socket, no AOF"
    )
    print(f"naive: sequential feedparser.parse(url, etag=, modified=) on {plan.sample} feeds")
    folder = Path(tempfile.mkdtemp(prefix="wirewatch-bench-"))
    server = RedisServer(folder / "redis", appendonly=False).start()
    farm, base = start_farm(feeds + plan.sample)  # the naive loop's own feeds at the end
    poller: PollerProcess | None = None
    naive_process: NaiveProcess | None = None
    try:
        naive_process = NaiveProcess(base, plan)
        poller = PollerProcess(base, plan, server, folder)
        poller.start()
        print(f"wirewatch poller (pid {poller.pid}); rounds interleaved with the naive loop's")
        naive: list[Round] = []
        wire: list[Round] = []
        for index, kind in enumerate(_plan(plan.rounds)):
            # Alternate who goes first, so a drift of the machine's speed favours neither.
            for who in ("naive", "wirewatch") if index % 2 == 0 else ("wirewatch", "naive"):
                if who == "naive":
                    result = naive_process.round(kind, index)
                    naive.append(result)
                else:
                    result = poller.round(kind, 2000 + index, farm.pid or 0)
                    wire.append(result)
                print(f"  {who:9} {kind:7}: {result.rate:,.0f} polls/s", flush=True)
        naive_rss = naive_process.stop()
        naive_process = None
        rss = poller.peak_rss_mb()
        text, summary = report(plan, naive, naive_rss, wire, rss)
        print(text, flush=True)
        if args.json:
            args.json.write_text(json.dumps({"plan": plan.__dict__, "summary": summary}, indent=2))
    finally:
        if naive_process is not None:
            naive_process.stop()
        if poller is not None:
            poller.stop()
        farm.kill()
        farm.join()
        server.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
