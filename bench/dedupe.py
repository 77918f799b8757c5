"""Same-story benchmark: precision and recall of story assignment, and items/s.

Run::

    .venv/bin/python -m bench.dedupe            # ~1 min on the 2-core dev machine
    .venv/bin/python -m bench.dedupe --quick    # fewer negatives and items

Data (read from ``../shared/data/dedupe-dev`` at run time; none of it is in the project):

- **MSRP** (``msrp/msr_paraphrase_test.txt``, sentences and outlets from
  ``msr_paraphrase_data.txt``): 1,725 pairs of news sentences (mostly ledes) from
  different outlets, judged by people. *Positives*: the 1,147 pairs judged paraphrases —
  the same story re-edited by another outlet. The 578 pairs judged not paraphrases come
  from the same news clusters (often the same event, other facts); they are neither
  positives nor negatives, and their merge rate is shown.
- **WikiRef220** (``wikiref220/WikiRef220/*.txt``): 220 news articles in topic groups;
  an item is the headline (first line) and lede (first paragraph). Every pair of
  *different* articles is a *negative*, hardest within one topic (36 articles on the
  Paris attacks, 39 on MH370, ...).
- **Random negatives**: pairs of MSRP sentences from different pairs and dates.

Reported:

1. a pair table over thresholds: recall (positives whose exact content-word Jaccard
   reaches the threshold *and* that share an LSH bucket, as the index needs), precision
   (over positives + all negatives), and the pass rates of each negative set;
2. the index for real: every MSRP sentence and WikiRef item assigned in batches of 100
   (as ``process_batch`` gets them) through :class:`~workers.stories.StoryIndex` on a
   private redis-server (never the one on 6379) and in memory: items/s, Redis bytes per
   item, pair recall (positives in one story) and false merges (negatives in one story);
3. datasketch's own ``MinHashLSH`` (in memory, and with its Redis storage) on the same
   items: insert + query items/s and Redis bytes per item.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import redis
from datasketch import MinHash, MinHashLSH

from monitor.items import Item
from monitor.keys import Keys
from monitor.redis_server import RedisServer
from workers.shingles import Bander, shingle_hashes, similarity
from workers.stories import MemoryBackend, StoryBackend, StoryIndex
from workers.story_store import RedisBackend

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dedupe-dev"
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
Pair = tuple[str, str]


def _msrp() -> tuple[dict[str, tuple[str, str]], list[Pair], list[Pair]]:
    """Sentences (id → (text, outlet)), paraphrase pairs, non-paraphrase pairs."""
    sentences: dict[str, tuple[str, str]] = {}
    with (DATA / "msrp/msr_paraphrase_data.txt").open(encoding="utf-8-sig") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 4 and row[0].isdigit():
                sentences[row[0]] = (row[1], row[3] or f"unknown-{row[0]}.msrp")
    positives, others = [], []
    for name in ("msr_paraphrase_test.txt",):
        with (DATA / "msrp" / name).open(encoding="utf-8-sig") as handle:
            for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) < 5 or not row[0].isdigit():
                    continue
                for sid, text in ((row[1], row[3]), (row[2], row[4])):
                    sentences.setdefault(sid, (text, f"unknown-{sid}.msrp"))
                (positives if row[0] == "1" else others).append((row[1], row[2]))
    return sentences, positives, others


def _wikiref() -> dict[str, tuple[str, str, str]]:
    """Article id → (topic, headline, lede)."""
    articles = {}
    for path in sorted((DATA / "wikiref220/WikiRef220").glob("*.txt")):
        paragraphs = [
            p.strip()
            for p in path.read_text(encoding="utf-8", errors="replace").split("\n")
            if p.strip()
        ]
        if len(paragraphs) >= 2:
            topic = path.stem.split(" (")[0].split(".")[0].lower()
            articles[f"wiki:{path.stem}"] = (topic, paragraphs[0], paragraphs[1])
    return articles


def _item(key: str, title: str, summary: str, outlet: str) -> Item:
    feed = f"https://{outlet.removeprefix('www.') or 'unknown'}/feed"
    return Item(key=key, feed_url=feed, feed_name=outlet, url="", title=title, summary=summary)


def pair_table(
    hashes: dict[str, tuple[int, ...]],
    outlets: dict[str, str],
    buckets: dict[str, set[str]],
    positives: Sequence[Pair],
    others: Sequence[Pair],
    negatives: dict[str, Sequence[Pair]],
) -> None:
    sets = {key: frozenset(h) for key, h in hashes.items()}

    def passes(pairs: Iterable[Pair], threshold: float) -> int:
        return sum(
            1
            for a, b in pairs
            if buckets[a] & buckets[b]
            and similarity(sets[a], sets[b], same_source=outlets[a] == outlets[b]) >= threshold
        )

    names = list(negatives)
    print(
        f"\npairs: {len(positives)} positives; negatives: "
        + ", ".join(f"{n} {len(p)}" for n, p in negatives.items())
    )
    header = f"{'threshold':>9} {'recall':>7} {'precision':>9} " + " ".join(
        f"{n:>14}" for n in names
    )
    print(header + f" {'msrp-not-para':>14}")
    for threshold in THRESHOLDS:
        tp = passes(positives, threshold)
        fps = {n: passes(p, threshold) for n, p in negatives.items()}
        fp = sum(fps.values())
        precision = tp / (tp + fp) if tp + fp else 1.0
        cells = " ".join(f"{fps[n] / len(negatives[n]):>14.4f}" for n in names)
        other = passes(others, threshold) / len(others)
        recall = tp / len(positives)
        print(f"{threshold:>9.2f} {recall:>7.3f} {precision:>9.4f} {cells} {other:>14.3f}")


def run_index(
    label: str,
    backend: StoryBackend,
    items: list[Item],
    threshold: float,
    positives: Sequence[Pair],
    negatives: Sequence[Pair],
    client: redis.Redis | None,
) -> None:
    index = StoryIndex(backend, 48 * 3600, threshold)
    before = int(client.info("memory")["used_memory"]) if client else 0
    story: dict[str, str] = {}
    started = time.perf_counter()
    now = time.time()
    for start in range(0, len(items), 100):
        batch = items[start : start + 100]
        for key, found in index.assign(batch, now).items():
            story[key] = found.story.id
    elapsed = time.perf_counter() - started
    memory = ""
    if client is not None:
        used = int(client.info("memory")["used_memory"]) - before
        memory = f", {used / len(items):,.0f} B of Redis per item"
    recall = sum(story[a] == story[b] for a, b in positives) / len(positives)
    merged = sum(story[a] == story[b] for a, b in negatives)
    print(
        f"{label:<22} {len(items) / elapsed:>8,.0f} items/s{memory}; "
        f"{len(set(story.values()))} stories; pair recall {recall:.3f}; "
        f"false merges {merged} of {len(negatives)} negative pairs"
    )


def run_datasketch(
    items: list[Item], threshold: float, socket: str | None, client: redis.Redis | None
) -> None:
    config = None
    if socket:
        config = {"type": "redis", "basename": b"bench", "redis": {"unix_socket_path": socket}}
    lsh = MinHashLSH(threshold=threshold, num_perm=64, storage_config=config)
    template = MinHash(num_perm=64, seed=1)
    before = int(client.info("memory")["used_memory"]) if client else 0
    started = time.perf_counter()
    for item in items:
        signature = MinHash(
            num_perm=64, seed=1, permutations=template.permutations, scheme=template.scheme
        )
        signature.update_batch([w.encode() for w in f"{item.title} {item.summary}".split()])
        lsh.query(signature)
        lsh.insert(item.key, signature)
    elapsed = time.perf_counter() - started
    where = "redis storage" if socket else "in memory"
    memory = ""
    if client is not None:
        used = int(client.info("memory")["used_memory"]) - before
        memory = f", {used / len(items):,.0f} B of Redis per item"
    print(f"datasketch {where:<11} {len(items) / elapsed:>8,.0f} items/s (query + insert){memory}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer negatives, fewer items")
    parser.add_argument("--threshold", type=float, default=0.3, help="for the index runs")
    args = parser.parse_args(argv)
    if not DATA.exists():
        sys.exit(f"no data at {DATA} (../shared/data/dedupe-dev)")
    rng = random.Random(4)
    sentences, positives, others = _msrp()
    articles = _wikiref()
    items = [_item(sid, "", text, outlet) for sid, (text, outlet) in sentences.items()]
    items += [_item(aid, head, lede, topic) for aid, (topic, head, lede) in articles.items()]
    if args.quick:
        positives, others = positives[:800], others[:400]
        wanted = {s for pair in positives + others for s in pair}
        items = [i for i in items if i.key in wanted or i.key.startswith("wiki:")]
    bander = Bander()
    hashes = {i.key: shingle_hashes(i.title, i.summary) for i in items}
    buckets = {key: set(bander.buckets(h)) for key, h in hashes.items()}
    in_pairs = {s for pair in positives + others for s in pair}
    msrp_ids = sorted(s for s in sentences if s in hashes)
    random_neg: list[Pair] = []
    while len(random_neg) < (5000 if args.quick else 50000):
        a, b = rng.sample(msrp_ids, 2)
        if (a, b) in in_pairs or sentences[a][0] == sentences[b][0]:
            continue
        random_neg.append((a, b))
    wiki = sorted(articles)
    same_topic = [
        (a, b) for a, b in itertools.combinations(wiki, 2) if articles[a][0] == articles[b][0]
    ]
    other_topic = [
        (a, b) for a, b in itertools.combinations(wiki, 2) if articles[a][0] != articles[b][0]
    ]
    negatives = {"random-msrp": random_neg, "wiki-topic": same_topic, "wiki-cross": other_topic}
    print(f"{len(items)} items ({len(sentences)} MSRP sentences, {len(articles)} WikiRef articles)")
    outlets = {i.key: i.feed_url for i in items}
    pair_table(hashes, outlets, buckets, positives, others, negatives)

    all_negatives = random_neg + same_topic + other_topic
    print(f"\nindex runs, threshold {args.threshold}, batches of 100, 64 perms in 32 bands of 2:")
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(Path(folder), appendonly=False)
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            backend = RedisBackend(client, Keys("bench:"), 7 * 86400)
            run_index(
                "wirewatch, Redis", backend, items, args.threshold, positives, all_negatives, client
            )
            run_index(
                "wirewatch, memory",
                MemoryBackend(),
                items,
                args.threshold,
                positives,
                all_negatives,
                None,
            )
            run_datasketch(items, max(args.threshold, 0.3), None, None)
            run_datasketch(items, max(args.threshold, 0.3), str(server.socket), client)
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
