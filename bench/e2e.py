"""End-to-end benchmark: feeds → poller → Redis → workers (NER, rules) → webhook.

Run::

    .venv/bin/python -m bench.e2e                    # 200 feeds, 1,000 rules, 1 and 2 workers
    .venv/bin/python -m bench.e2e --quick            # a ~1-minute smoke run

What runs, each in its own process: the feed farm (:mod:`bench.feedfarm`, N feeds on
127.0.0.1, publishing real news sentences), a private redis-server in a temporary
folder (never the Redis on 6379), the real ``wirewatch poll`` and 1 or 2 real
``wirewatch work`` processes on a generated config (M watch-list rules from
:mod:`bench.e2e_data`, NER on, one signed webhook channel, every feed polled each
second), and a webhook receiver in this process that notes when each alert arrives.

Phases, after a warm-up (the first poll of every feed enqueues its backlog of 20–50
items, which the workers drain): for each worker count, a **burst** (``--items`` new
items published at one instant on random feeds) and a **paced** run (``--rate`` items a
second for ``--paced-seconds``, steadily). For every published item the farm knows its
publication time (to the microsecond) and when a body containing it was first served
(its *fetch*); the workers' ``batch_processed`` lines say when the batch holding it was
done; the receiver says when each alert arrived. Reported per phase: items/s (published
items ÷ seconds from the first publication to the last item processed), latencies
(p50/p99/max) publish→fetch and fetch→processed over every item, publish→webhook and
fetch→webhook over the items that raised an alert, CPU seconds per process group (and
the machine's other CPU: the machine is shared), and the load average before and after.
Then, in this process, the NER model and the rules alone on a sample of the texts, to
show where the workers' CPU goes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.registry import StartedJobRegistry

from bench.e2e_data import news_texts, watch_rules
from bench.e2e_procs import (
    LogTail,
    Receiver,
    Service,
    busy_cpu,
    machine,
    read_events,
    tree_cpu,
    write_config,
)
from bench.feedfarm import start_farm
from monitor.keys import Keys
from monitor.redis_server import RedisServer

TARGET_RATE = 300.0  # items/s end to end, NER and 1,000 rules, 2 cores
TARGET_P99 = 1.0  # s, fetch → webhook at 100 items/s
_ITEM_URL = re.compile(r"-(\d+)-(\d+)(?:\.html)?$")


@dataclass
class Latency:
    count: int = 0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    @classmethod
    def of(cls, values: list[float]) -> Latency:
        if not values:
            return cls()
        ordered = sorted(values)

        def rank(q: float) -> float:
            return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

        return cls(len(ordered), rank(0.50), rank(0.99), ordered[-1])

    def text(self) -> str:
        return f"{self.p50:6.2f} {self.p99:6.2f} {self.max:6.2f}  (n={self.count})"


@dataclass
class Phase:
    kind: str  # "burst" or "paced"
    workers: int
    published: int = 0
    processed: int = 0
    seconds: float = 0.0  # first publication → last item processed
    items_per_s: float = 0.0
    alerts: int = 0
    publish_fetch: Latency = field(default_factory=Latency)
    fetch_processed: Latency = field(default_factory=Latency)
    publish_webhook: Latency = field(default_factory=Latency)
    fetch_webhook: Latency = field(default_factory=Latency)
    batches: int = 0
    batch_ms_per_item: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    timed_out: bool = False


class Bench:
    """The processes of a run and the measuring of its phases."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.texts, self.source = news_texts()
        upcoming = len(args.workers) * (args.items + int(args.rate * args.paced_seconds))
        rules, term_sets = watch_rules(args.rules, self.texts, upcoming)
        self.server = RedisServer(folder / "redis", appendonly=False).start()
        self.farm, self.base = start_farm(args.feeds, self.texts)
        self.receiver = Receiver().start()
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.config = write_config(
            folder / "wirewatch.yaml",
            base=self.base,
            feeds=args.feeds,
            redis_url=self.server.url,
            hook_url=self.receiver.url,
            secret=secret,
            rules=rules,
            term_sets=term_sets,
            fork=args.fork,
        )
        self.keys = Keys("e2e:")
        self.client = redis.Redis.from_url(self.server.url)
        self.poller: Service | None = None
        self.workers: list[Service] = []
        self._started_workers = 0
        self._tails: dict[Path, LogTail] = {}

    # -- processes ---------------------------------------------------------------------

    def start_poller(self) -> None:
        self.poller = Service("poll", self.config, self.server.url, self.folder / "poller.log")
        self.poller.wait_for("poller_started")

    def set_workers(self, count: int) -> None:
        while len(self.workers) > count:
            self.workers.pop().stop()
        fresh = []
        while len(self.workers) < count:
            self._started_workers += 1
            log = self.folder / f"worker{self._started_workers}.log"
            fresh.append(Service("work", self.config, self.server.url, log))
            self.workers.append(fresh[-1])
        for worker in fresh:
            worker.wait_for("worker_started")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.poller is not None:
            self.poller.stop()
        self.receiver.stop()
        self.farm.kill()
        self.farm.join()
        self.client.close()
        self.server.stop()

    # -- state -------------------------------------------------------------------------

    def idle(self) -> bool:
        """No job queued or running on either queue."""
        for name in (self.keys.items_queue, self.keys.alerts_queue):
            queue = Queue(name, connection=self.client)
            if queue.count or StartedJobRegistry(queue=queue).count:
                return False
        return True

    def batches(self, since: float) -> list[dict[str, Any]]:
        lines = []
        for index in range(1, self._started_workers + 1):
            log = self.folder / f"worker{index}.log"
            tail = self._tails.setdefault(log, LogTail(log, "batch_processed"))
            lines += [e for e in tail.read() if e["at"] >= since]
        return sorted(lines, key=lambda e: e["at"])

    def first_poll(self) -> int:
        """Until every feed was polled once; its backlog (20–50 items a feed) is then
        dropped from the queue unprocessed: draining it would take minutes and measure
        nothing the bursts do not. Returns how many items were dropped."""
        assert self.poller is not None
        deadline = time.monotonic() + 600
        polled = LogTail(self.poller.log, "feed_polled")
        while len(polled.read()) < self.args.feeds:
            self._check(deadline, "the first poll of every feed")
        time.sleep(1.0)  # the last polls' jobs
        dropped = 0
        for event in read_events(self.poller.log, "feed_polled"):
            dropped += int(event.get("new") or 0)
        Queue(self.keys.items_queue, connection=self.client).empty()  # type: ignore[no-untyped-call]
        return dropped

    def warm_up(self, seed: int) -> None:
        """A small burst through fresh workers (first-job costs are not measured)."""
        self._post("/_publish", {"items": 50, "seed": seed})
        deadline = time.monotonic() + 300
        start = time.time()
        while sum(int(e.get("items", 0)) for e in self.batches(start - 5)) < 50 or not self.idle():
            self._check(deadline, "the warm-up burst")
        self._settle()

    def _check(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}; see {self.folder}")
        for service in [*self.workers, *([self.poller] if self.poller else [])]:
            if service.process.poll() is not None:
                raise RuntimeError(f"wirewatch {service.command} exited; see {service.log}")
        time.sleep(0.1)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 - our own farm on 127.0.0.1
            self.base + path, data=json.dumps(body).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())

    def _cpu(self) -> dict[str, float]:
        pids = {
            "workers": [w.pid for w in self.workers],
            "poller": [self.poller.pid] if self.poller else [],
            "farm": [self.farm.pid or 0],
            "redis": [self.server.pid or 0],
        }
        out = {name: sum(tree_cpu(pid) for pid in group) for name, group in pids.items()}
        own = os.times()  # this process alone: the others above are its children
        out["bench"] = own.user + own.system
        out["machine"] = busy_cpu()
        return out

    # -- one phase ---------------------------------------------------------------------

    def phase(self, kind: str, workers: int, seed: int) -> Phase:
        result = Phase(kind, workers, load_before=[round(x, 2) for x in os.getloadavg()])
        cpu0 = self._cpu()
        first_arrival = self.receiver.count()
        start = time.time()
        if kind == "burst":
            records = self._post("/_publish", {"items": self.args.items, "seed": seed})
            records = records["published"]
        else:
            spec = {"rate": self.args.rate, "seconds": self.args.paced_seconds, "seed": seed}
            self._post("/_pace", spec)
            time.sleep(self.args.paced_seconds)
            while self._get("/_published")["pacing"]:
                time.sleep(0.05)
            records = [r for r in self._get("/_published")["published"] if r[2] >= start]
        published = {(int(n), int(i)): float(t) for n, i, t in records}
        result.published = len(published)
        deadline = time.monotonic() + 60 + len(published) / 10  # below 10 items/s: give up
        while True:
            batches = self.batches(start)
            result.processed = sum(int(e.get("items", 0)) for e in batches)
            if result.processed >= len(published) and self.idle():
                break
            if time.monotonic() > deadline:
                result.timed_out = True
                break
            self._check(deadline + 1, "the phase")
            time.sleep(0.15)
        self._settle()
        cpu1 = self._cpu()
        ours = {name: cpu1[name] - cpu0[name] for name in cpu0 if name != "machine"}
        ours["other"] = max(0.0, cpu1["machine"] - cpu0["machine"] - sum(ours.values()))
        result.cpu_s = {name: round(value, 2) for name, value in ours.items()}
        result.load_after = [round(x, 2) for x in os.getloadavg()]
        self._measure(result, published, batches, self.receiver.since(first_arrival))
        return result

    def _settle(self) -> None:
        """Until no webhook arrived for a second (a slow or failed delivery is a job of its own)."""
        deadline = time.monotonic() + 60
        count, quiet_since = self.receiver.count(), time.monotonic()
        while time.monotonic() - quiet_since < 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.receiver.count()
            if now != count or not self.idle():
                count, quiet_since = now, time.monotonic()

    def _measure(
        self,
        result: Phase,
        published: dict[tuple[int, int], float],
        batches: list[dict[str, Any]],
        arrivals: list[Any],
    ) -> None:
        first = min(published.values(), default=0.0)
        if batches:
            result.seconds = batches[-1]["at"] - first
            result.items_per_s = result.processed / result.seconds if result.seconds else 0.0
            result.batches = len(batches)
            total_ms = sum(float(e.get("duration_ms", 0)) for e in batches)
            result.batch_ms_per_item = total_ms / max(1, result.processed)
        fetched = {int(n): sorted(times) for n, times in self._get("/_fetched").items()}
        done: dict[str, list[float]] = {}
        for event in batches:
            for name in str(event.get("feed", "")).split(", "):
                done.setdefault(name, []).append(event["at"])
        fetch_at: dict[tuple[int, int], float] = {}
        processed_at: dict[tuple[int, int], float] = {}
        for (n, item), at in published.items():
            fetch = next((t for t in fetched.get(n, []) if t >= at), None)
            if fetch is None:
                continue
            fetch_at[(n, item)] = fetch
            ended = next((t for t in done.get(f"wire {n}", []) if t >= fetch), None)
            if ended is not None:
                processed_at[(n, item)] = ended
        result.publish_fetch = Latency.of([fetch_at[k] - published[k] for k in fetch_at])
        result.fetch_processed = Latency.of([processed_at[k] - fetch_at[k] for k in processed_at])
        to_alert, from_fetch = [], []
        for arrival in arrivals:
            match = _ITEM_URL.search(str(arrival.body.get("item", {}).get("url", "")))
            key = (int(match[1]), int(match[2])) if match else None
            if key is None or key not in published or arrival.body.get("kind") != "new":
                continue
            to_alert.append(arrival.at - published[key])
            if key in fetch_at:
                from_fetch.append(arrival.at - fetch_at[key])
        result.alerts = len(to_alert)
        result.publish_webhook = Latency.of(to_alert)
        result.fetch_webhook = Latency.of(from_fetch)


def component_costs(config: Path, texts: list[tuple[str, str]], sample: int) -> dict[str, Any]:
    """NER and rule matching alone, in this process, on ``sample`` of the texts (loading
    the model applies the workers' malloc tuning here too)."""
    from monitor.config_loader import load_config
    from monitor.items import Item
    from workers import resources
    from workers.entities import item_text

    res = resources.load(load_config(config))
    items = [
        Item(key=str(i), feed_url="bench:", feed_name="bench", url="", title=t, summary=s)
        for i, (t, s) in enumerate(texts[:sample])
    ]
    res.extractor.extract_many([item_text(item) for item in items[:20]])  # warm up
    started = time.process_time()
    extracted = res.extractor.extract_many([item_text(item) for item in items])
    ner = time.process_time() - started
    started = time.process_time()
    matches = sum(
        len(res.rules.match(item, ents)) for item, ents in zip(items, extracted, strict=True)
    )
    rules = time.process_time() - started
    return {
        "ner_model": res.extractor.name,
        "sample": len(items),
        "ner_ms_per_item": round(1000 * ner / len(items), 3),
        "rules_ms_per_item": round(1000 * rules / len(items), 3),
        "matches_per_item": round(matches / len(items), 3),
        "entities_per_item": round(sum(map(len, extracted)) / len(items), 2),
    }


def report(phases: list[Phase], costs: dict[str, Any], head: dict[str, Any]) -> str:
    lines = [
        f"machine: {head['machine_before']['cores']} cores, {head['machine_before']['cpu']}; "
        f"load average before {head['machine_before']['load']}, "
        f"after {head['machine_after']['load']}",
        f"run: {head['feeds']} feeds (polled every 1 s), {head['rules']} rules, NER "
        f"{costs.get('ner_model', '?')}, texts from {head['source']}; first poll's "
        f"backlog ({head['backlog']} items) dropped, 50-item warm-up burst per worker set",
        "",
        f"{'phase':<7}{'wk':>3}{'items':>7}{'items/s':>9}{'alerts':>7}   latency s: "
        "p50    p99    max",
    ]
    for p in phases:
        rate = f"{p.items_per_s:9.0f}" + ("!" if p.timed_out else "")
        lines.append(f"{p.kind:<7}{p.workers:>3}{p.published:>7}{rate}{p.alerts:>7}")
        for label, value in (
            ("publish→fetch", p.publish_fetch),
            ("fetch→processed", p.fetch_processed),
            ("publish→webhook", p.publish_webhook),
            ("fetch→webhook", p.fetch_webhook),
        ):
            lines.append(f"{'':>26}{label:<17}{value.text()}")
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in p.cpu_s.items())
        per_item = 1000 * p.cpu_s.get("workers", 0.0) / max(1, p.processed)
        lines.append(
            f"{'':>26}{p.seconds:.1f} s wall; CPU s: {cpu}; workers {per_item:.1f} ms/item, "
            f"batch time {p.batch_ms_per_item:.1f} ms/item over {p.batches} batches; "
            f"load {p.load_before[0]:.1f}→{p.load_after[0]:.1f}"
        )
    if costs:
        lines += [
            "",
            f"components alone (this process, {costs['sample']} texts): NER "
            f"{costs['ner_ms_per_item']:.2f} ms/item ({costs['entities_per_item']} entities), "
            f"rules {costs['rules_ms_per_item']:.3f} ms/item "
            f"({costs['matches_per_item']} matches/item)",
        ]
    bursts = [p for p in phases if p.kind == "burst"]
    paced = [p for p in phases if p.kind == "paced"]
    if bursts:
        best = max(bursts, key=lambda p: p.items_per_s)
        verdict = "MET" if best.items_per_s >= TARGET_RATE else "MISSED"
        lines.append(
            f"target ≥ {TARGET_RATE:.0f} items/s end to end: {verdict} "
            f"({best.items_per_s:.0f} items/s with {best.workers} worker(s), "
            f"{best.items_per_s / TARGET_RATE:.2f}× the target)"
        )
    for p in paced:
        verdict = "MET" if p.fetch_webhook.count and p.fetch_webhook.p99 < TARGET_P99 else "MISSED"
        lines.append(
            f"target p99 fetch→webhook < {TARGET_P99:.0f} s at {head['rate']:.0f} items/s, "
            f"{p.workers} worker(s): {verdict} ({p.fetch_webhook.p99:.2f} s, "
            f"{p.fetch_webhook.p99 / TARGET_P99:.2f}× the bound)"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--items", type=int, default=2000, help="items in a burst")
    parser.add_argument("--workers", default="1,2", help="worker process counts, e.g. 1,2")
    parser.add_argument("--rate", type=float, default=100.0, help="items/s of the paced run")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run")
    parser.add_argument(
        "--fork", action="store_true", help="workers.fork: true (a forked child per job)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    args.workers = sorted({int(x) for x in str(args.workers).split(",") if x.strip()})
    if args.quick:
        args.feeds, args.items, args.paced_seconds = min(args.feeds, 50), 300, 8.0
        args.workers = args.workers[:1]
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the subprocesses are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    head: dict[str, Any] = {
        "feeds": args.feeds,
        "rules": args.rules,
        "items": args.items,
        "rate": args.rate,
        "paced_seconds": args.paced_seconds,
        "workers": args.workers,
        "machine_before": machine(),
    }
    print(f"wirewatch end-to-end benchmark — {head}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="wirewatch-e2e-"))
    bench: Bench | None = None
    phases: list[Phase] = []
    costs: dict[str, Any] = {}
    try:
        bench = Bench(args, folder)
        head["source"] = bench.source
        bench.start_poller()
        print("first poll of every feed (its backlog is dropped) …", flush=True)
        head["backlog"] = bench.first_poll()
        for count in args.workers:
            bench.set_workers(count)
            bench.warm_up(seed=count)
            for kind in ("burst", "paced"):
                print(f"{kind} with {count} worker(s) …", flush=True)
                phase = bench.phase(kind, count, seed=100 * count + len(phases))
                print(f"  {phase.items_per_s:.0f} items/s, {phase.alerts} alerts", flush=True)
                phases.append(phase)
        bench.stop()
        bench = None
        costs = component_costs(folder / "wirewatch.yaml", news_texts()[0], 300)
        head["machine_after"] = machine()
        print(report(phases, costs, head), flush=True)
        if args.json:
            data = {"run": head, "phases": [asdict(p) for p in phases], "components": costs}
            args.json.write_text(json.dumps(data, indent=2))
    finally:
        if bench is not None:
            bench.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
