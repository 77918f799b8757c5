"""Measure Redis memory per item: real ``wirewatch poll`` and ``work`` on a private Redis.

    .venv/bin/python deploy/redis_memory.py [--items 10000] [--workers 2] [--ner]

Builds ``--items`` news items from the MSR paraphrase corpus (``../shared/data/dedupe-dev``;
one sentence as the title, the next two as the summary), writes them as RSS files of 100
items (``file:`` feeds), starts a private ``redis-server`` (no persistence), runs one
``wirewatch poll`` until every feed is enqueued, then ``wirewatch work --burst`` workers
until the queues are empty, and reads ``INFO memory`` before and after. Reported: the
growth in ``used_memory`` per 10,000 items, once with rq's finished jobs still kept (rq
keeps a finished job for ``result_ttl``, 500 s) and once without them (the steady
state: items, dedupe keys, stories, LSH buckets, alerts, seen sets).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from html import escape
from pathlib import Path

import redis

from monitor.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
MSRP = ROOT.parent / "shared/data/dedupe-dev/msrp/msr_paraphrase_data.txt"
PER_FEED = 100
RULES = {
    "iraq": "Iraq OR Baghdad",
    "tech": "Microsoft OR Intel OR IBM",
    "markets": '"stock market" OR shares NEAR/3 fell',
    "police": "police AND (arrested OR charged)",
}


def _sentences() -> list[str]:
    with MSRP.open(encoding="utf-8-sig") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["String"] for row in rows if row.get("String")]


def _write_feeds(folder: Path, count: int) -> list[Path]:
    sentences = _sentences()
    feeds: list[Path] = []
    for start in range(0, count, PER_FEED):
        entries = []
        for n in range(start, min(count, start + PER_FEED)):
            title = sentences[n % len(sentences)]
            summary = " ".join(sentences[(n + k) % len(sentences)] for k in (1, 2))
            entries.append(
                f"<item><guid isPermaLink='false'>item-{n}</guid><title>{escape(title)}</title>"
                f"<link>https://news.example/{n}</link><description>{escape(summary)}"
                "</description><pubDate>Mon, 06 Jan 2025 10:00:00 GMT</pubDate></item>"
            )
        path = folder / f"feed-{start // PER_FEED:04d}.xml"
        path.write_text(
            "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>Wire {start}</title><link>https://news.example/</link>"
            + "".join(entries)
            + "</channel></rss>"
        )
        feeds.append(path)
    return feeds


def _config(folder: Path, url: str, feeds: list[Path], ner: bool) -> Path:
    feed_lines = "".join(f'  - {{url: "file:{p.name}", interval: 86400}}\n' for p in feeds)
    rule_lines = "".join(
        f"  - {{id: {rid}, query: '{query}', channels: [console]}}\n"
        for rid, query in RULES.items()
    )
    path = folder / "wirewatch.yaml"
    path.write_text(
        f"redis: {{url: '{url}'}}\nlogging: {{format: json, level: warning}}\n"
        f"workers: {{ner: {{enabled: {str(ner).lower()}}}}}\n"
        f"feeds:\n{feed_lines}channels:\n  console: {{type: log}}\nrules:\n{rule_lines}"
    )
    return path


def _wirewatch(config: Path, *command: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WIREWATCH_CONFIG")}
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "monitor", "--config", str(config), *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ner", action="store_true", help="spaCy NER (slow); default: off")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = RedisServer(folder / "redis", appendonly=False).start()
        try:
            client = redis.Redis.from_url(server.url)
            feeds = _write_feeds(folder, args.items)
            config = _config(folder, server.url, feeds, args.ner)
            client.flushall()
            before = _used(client)
            started = time.monotonic()
            poller = _wirewatch(config, "poll", log=folder / "poll.log")
            queue = "rq:queue:wirewatch:items"
            while client.llen(queue) < len(feeds):
                time.sleep(0.5)
            poller.terminate()
            poller.wait(30)
            workers = [
                _wirewatch(config, "work", "--burst", log=folder / f"work-{n}.log")
                for n in range(args.workers)
            ]
            for worker in workers:
                worker.wait()
            took = time.monotonic() - started
            with_jobs = _used(client) - before
            for key in client.scan_iter("rq:*", count=1000):
                client.delete(key)
            steady = _used(client) - before
            alerts = sum(1 for _ in client.scan_iter("wirewatch:alert:*:queued", count=1000))
            per = 10_000 / args.items
            print(
                f"{args.items} items ({len(feeds)} feeds, NER {'on' if args.ner else 'off'}, "
                f"{args.workers} workers, {took:.0f} s), {alerts} alerts, "
                f"{client.dbsize()} keys after rq's keys were dropped\n"
                f"used_memory growth per 10,000 items: {with_jobs * per / 2**20:.1f} MiB with "
                f"rq's finished jobs, {steady * per / 2**20:.1f} MiB without (steady state)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
