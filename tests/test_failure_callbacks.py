"""rq's on-failure callbacks: they act on the last failure only, and nothing is dropped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.config_loader import parse_config
from monitor.items import Item, batch_payload
from monitor.keys import Keys
from workers import resources
from workers.api import list_dead
from workers.dedupe import dedupe
from workers.jobs import batch_job_failed, delivery_job_failed


@pytest.fixture(autouse=True)
def _resources(prefix: str) -> Iterator[None]:
    config = parse_config(
        f'redis: {{prefix: "{prefix}"}}\nworkers: {{ner: {{enabled: false}}}}\n'
        "channels: {ops: {type: log}}\n",
        "callbacks.yaml",
        {},
    )
    resources.load(config)
    yield
    resources._current = None


def job(connection: redis.Redis, func: str, args: list[object], retries_left: int) -> Job:
    created = Job.create(func, args=args, connection=connection, serializer=JSONSerializer)
    created.retries_left = retries_left
    return created


def test_a_delivery_job_that_fails_for_good_becomes_a_dead_letter(
    redis_client: redis.Redis, prefix: str
) -> None:
    crashed = job(redis_client, "workers.jobs.deliver", ["a1", "ops", 1], retries_left=1)
    delivery_job_failed(crashed, redis_client, RuntimeError, RuntimeError("boom"), None)
    assert list_dead(redis_client, Keys(prefix)) == []  # rq runs it again: nothing yet
    crashed.retries_left = 0
    delivery_job_failed(crashed, redis_client, RuntimeError, RuntimeError("boom"), None)
    [letter] = list_dead(redis_client, Keys(prefix))
    assert (letter.target, letter.channel, letter.kind) == ("a1", "ops", "alert")
    assert letter.reason == "delivery job failed: RuntimeError: boom"


def test_a_batch_that_fails_for_good_gives_its_dedupe_claims_back(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    item = Item(
        key="k1", feed_url="https://a.test/f", feed_name="A", url="https://n.test/s", title="T"
    )
    copy = Item(
        key="k2", feed_url="https://b.test/f", feed_name="B", url="https://n.test/s", title="T"
    )
    dedupe(redis_client, keys, [item], 60)
    failed = job(redis_client, "workers.jobs.process_batch", [batch_payload([item])], 0)
    batch_job_failed(failed, redis_client, None, None, None)  # abandoned: no exception
    assert dedupe(redis_client, keys, [copy], 60).new == [copy]
