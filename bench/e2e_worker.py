"""The worker path alone, in one process: where a worker's CPU per item goes.

Run::

    .venv/bin/python -m bench.e2e_worker                       # the variants, interleaved
    .venv/bin/python -m bench.e2e_worker --batch 2 --inline 0  # one variant (for py-spy)
    .venv/bin/python -m bench.e2e_worker --no-ner              # all but NER (less noise)

What runs: a private redis-server, the webhook receiver of :mod:`bench.e2e_procs` (a
thread here), the e2e config (1,000 watch-list rules, NER on, one signed webhook
channel). Per round and variant, ``--items`` fresh news items from 50 feeds are
enqueued as the poller would (:func:`monitor.enqueue.enqueue_batches`, ``--batch``
items a job), then an in-process rq worker (the one ``wirewatch work`` runs) works in
burst mode until both queues are empty. Measured: the worker thread's CPU time and the
wall time per item, alerts received, and the worker's Redis round trips and commands
per item (round trips counted on the client's connection, commands by the server's
``INFO commandstats``). Variants: every ``--batch`` × ``--inline``
(``delivery.inline_timeout``; 0 = every delivery an rq job, the old path), interleaved
round by round so the shared machine's load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.e2e_data import news_texts, watch_rules
from bench.e2e_procs import Receiver, machine, tree_cpu, write_config
from monitor.config import Config
from monitor.config_loader import load_config
from monitor.enqueue import enqueue_batches, items_queue
from monitor.items import Item
from monitor.keys import Keys
from monitor.logs import configure_logging
from monitor.redis_server import RedisServer
from workers import resources
from workers.worker import new_worker

FEEDS = 50


class _Counting(redis.UnixDomainSocketConnection):
    """A connection (the private server's socket) that counts its round trips: a command
    or a pipeline is one send."""

    sends = 0

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        _Counting.sends += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def _commands(connection: redis.Redis) -> int:
    stats = connection.info("commandstats")
    return sum(int(value["calls"]) for value in stats.values())


def _items(texts: list[tuple[str, str]], start: int, count: int, tag: str) -> list[Item]:
    now = datetime.now(UTC)
    out = []
    for index in range(start, start + count):
        title, summary = texts[index % len(texts)]
        feed = index % FEEDS
        url = f"http://wire{feed}.example/{tag}/{index}.html"
        out.append(
            Item(
                key=f"{tag}#{index}",
                feed_url=f"http://wire{feed}.example/feed.xml",
                feed_name=f"wire {feed}",
                url=url,
                title=title,
                summary=summary,
                guid=url,
                published=now,
            )
        )
    return out


def _variant(config: Config, inline: float) -> Config:
    delivery = config.delivery.model_copy(update={"inline_timeout": inline})
    return config.model_copy(update={"delivery": delivery})


def run_once(
    connection: redis.Redis,
    config: Config,
    items: list[Item],
    batch: int,
    receiver: Receiver,
    redis_pid: int,
) -> dict[str, float]:
    """Enqueue ``items`` in jobs of ``batch``, then work them off; CPU and wall per item."""
    res = resources.load(config, previous=resources.current())
    keys = Keys(config.redis.prefix)
    enqueue_batches(items_queue(connection, keys), items, batch_size=batch, job_timeout=300)
    before = receiver.count()
    worker = new_worker(res, connection)
    commands, sends, server = _commands(connection), _Counting.sends, tree_cpu(redis_pid)
    cpu, wall = time.thread_time(), time.perf_counter()
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    sends, server = _Counting.sends - sends, tree_cpu(redis_pid) - server
    commands = _commands(connection) - commands - 1  # the INFO itself
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and receiver.count() == before:
        time.sleep(0.05)
    return {
        "cpu_ms": 1000 * cpu / len(items),
        "wall_ms": 1000 * wall / len(items),
        "alerts": receiver.count() - before,
        "redis_ms": 1000 * server / len(items),
        "trips": sends / len(items),
        "commands": commands / len(items),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=300, help="items per round and variant")
    parser.add_argument("--batch", default="3,12", help="items a job, e.g. 3,12")
    parser.add_argument("--inline", default="0,5", help="delivery.inline_timeout values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument(
        "--no-ner", action="store_true", help="NER off: the rest of the path, less noisy"
    )
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.batch.split(",")]
    inlines = [float(x) for x in args.inline.split(",")]
    variants = [(b, i) for b in sizes for i in inlines]
    texts, source = news_texts()
    upcoming = args.items * len(variants) * (args.rounds + 1)
    rules, term_sets = watch_rules(args.rules, texts, upcoming)
    folder = Path(tempfile.mkdtemp(prefix="wirewatch-e2e-worker-"))
    server = RedisServer(folder / "redis", appendonly=False).start()
    receiver = Receiver().start()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    path = write_config(
        folder / "wirewatch.yaml",
        base="http://127.0.0.1:9",
        feeds=1,
        redis_url=server.url,
        hook_url=receiver.url,
        secret=secret,
        rules=rules,
        term_sets=term_sets,
    )
    base = load_config(path)
    if args.no_ner:
        ner = base.workers.ner.model_copy(update={"enabled": False})
        base = base.model_copy(update={"workers": base.workers.model_copy(update={"ner": ner})})
    configure_logging("warning", "json")
    resources.load(base)
    importlib.import_module("workers.jobs")  # as ``wirewatch work`` does before working
    pool = redis.ConnectionPool.from_url(server.url, connection_class=_Counting)
    connection = redis.Redis(connection_pool=pool)
    print(f"machine: {machine()}; {args.rules} rules, texts from {source}", flush=True)
    results: dict[tuple[int, float], list[dict[str, float]]] = {v: [] for v in variants}
    start = 0
    try:
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for batch, inline in variants:
                items = _items(texts, start, args.items, f"r{round_}b{batch}i{inline}")
                start += args.items
                figures = run_once(
                    connection, _variant(base, inline), items, batch, receiver, server.pid or 0
                )
                if round_:
                    results[(batch, inline)].append(figures)
    finally:
        connection.close()
        receiver.stop()
        server.stop()
    print(
        f"{'batch':>5} {'inline s':>8} {'CPU ms/item':>12} {'wall ms/item':>13} {'alerts':>7}"
        f" {'trips/item':>10} {'cmds/item':>9} {'redis CPU ms/item':>17}"
    )
    for (batch, inline), runs in results.items():
        cpu = statistics.median(r["cpu_ms"] for r in runs)
        wall = statistics.median(r["wall_ms"] for r in runs)
        alerts = statistics.median(r["alerts"] for r in runs)
        trips = statistics.median(r["trips"] for r in runs)
        commands = statistics.median(r["commands"] for r in runs)
        server_ms = statistics.median(r["redis_ms"] for r in runs)
        print(
            f"{batch:>5} {inline:>8g} {cpu:>12.2f} {wall:>13.2f} {alerts:>7.0f}"
            f" {trips:>10.2f} {commands:>9.2f} {server_ms:>17.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
