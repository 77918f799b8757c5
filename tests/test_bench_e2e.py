"""The end-to-end benchmark's own pieces: the farm's publishing routes, the receiver, the
generated config and rules.

The full pipeline (poller and worker processes, NER, webhooks) is what
``tests/test_e2e.py`` tests; starting it here again would cost half a minute for nothing
new. These tests check what the benchmark adds on top: that a published item carries its
publication time and news text, that a fetch is recorded, that the generated config and
rules validate, and that the receiver records arrivals.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import urllib.request
from pathlib import Path

import feedparser
import pytest
from aiohttp.test_utils import TestClient, TestServer

from monitor.config_loader import load_config

# bench/ is not part of the installed package: import it from the source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.e2e_data import compose_texts, news_texts, watch_rules
from bench.e2e_procs import Receiver, write_config
from bench.feedfarm import Farm, make_app

TEXTS = [
    ("Russia sought China military aid for Ukraine war, says US", "Officials in Washington said."),
    ("Apple shares rose in New York after the results", "Tim Cook spoke to analysts."),
]


def test_published_items_carry_their_time_and_news_text() -> None:
    farm = Farm(3, texts=TEXTS)
    before = time.time()
    records = farm.publish(2, random.Random(1))
    assert len(records) == 2 and all(before <= at <= time.time() for _, _, at in records)
    n, item, at = records[0]
    parsed = feedparser.parse(farm.body(n))
    entry = next(e for e in parsed.entries if f"-{n}-{item}" in (e.get("link") or ""))
    assert entry.title == TEXTS[0][0]
    assert TEXTS[0][1] in (entry.get("summary") or "")
    assert abs(time.mktime(entry.published_parsed) - time.mktime(time.gmtime(int(at)))) < 1
    assert farm.fetched[n] and farm.fetched[n][-1] >= at


def test_the_farm_paces_and_reports_over_http() -> None:
    async def scenario() -> None:
        client = TestClient(TestServer(make_app(Farm(5, texts=TEXTS))))
        await client.start_server()
        try:
            response = await client.post("/_publish", json={"items": 3, "seed": 2})
            assert len((await response.json())["published"]) == 3
            response = await client.post("/_pace", json={"rate": 50, "seconds": 0.3})
            assert response.status == 200
            await asyncio.sleep(0.5)
            state = await (await client.get("/_published")).json()
            assert not state["pacing"] and 3 + 10 <= len(state["published"]) <= 3 + 16
            await client.get("/feeds/0.xml")
            assert "0" in await (await client.get("/_fetched")).json()
        finally:
            await client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("count", [700, 10_944])
def test_no_two_composed_texts_share_more_than_one_sentence(count: int) -> None:
    """Otherwise a later text re-publishes an earlier story and raises no alert."""
    sentences = [f"s{k}." for k in range(count)]
    texts = compose_texts(sentences)
    assert len(texts) == count and len({title for title, _ in texts}) == count
    seen: set[tuple[str, str]] = set()
    for title, summary in texts:
        parts = sorted([title, *summary.split(" ")])
        assert len(set(parts)) == 3
        pairs = {(a, b) for a in parts for b in parts if a < b}
        assert not pairs & seen
        seen |= pairs


def test_too_few_sentences_to_compose_distinct_texts_is_an_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        compose_texts([f"s{k}." for k in range(7)])


def test_generated_config_and_rules_validate(tmp_path: Path) -> None:
    texts, source = news_texts()
    if "MSR" not in source:
        pytest.skip("needs the news sentences of ../shared/data (not committed)")
    rules, term_sets = watch_rules(40, texts, 100)
    assert len(rules) == 40 and len({rid for rid, _ in rules}) == 40
    path = write_config(
        tmp_path / "wirewatch.yaml",
        base="http://127.0.0.1:1",
        feeds=3,
        redis_url="redis://127.0.0.1:1/0",
        hook_url="http://127.0.0.1:2/hook",
        secret="whsec_" + "A" * 32,
        rules=rules,
        term_sets=term_sets,
    )
    config = load_config(path)
    assert len(config.feeds) == 3 and config.feeds[0].interval == 1
    assert len(config.rules) == 40


@pytest.mark.timeout(20)
def test_the_receiver_records_arrivals() -> None:
    receiver = Receiver().start()
    try:
        body = json.dumps({"kind": "new", "item": {"url": "https://x/story-1-2"}}).encode()
        request = urllib.request.Request(receiver.url, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204
        (arrival,) = receiver.since(0)
        assert arrival.body["kind"] == "new" and arrival.at <= time.time()
    finally:
        receiver.stop()
