"""Hand-overs to the workers: one transaction per call (monitor/enqueue.py); on the
poller's loop, concurrent polls share jobs and every call still returns only once its
items are in Redis (monitor/enqueue_loop.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from monitor import enqueue_loop
from monitor.enqueue import enqueue_batches, items_queue
from monitor.enqueue_loop import LoopEnqueuer
from monitor.items import Item, items_from_payload
from monitor.keys import Keys
from monitor.metrics import ITEMS_ENQUEUED, label_field


def feed_items(feed: int, count: int) -> list[Item]:
    return [
        Item(
            key=f"f{feed}#{n}",
            feed_url=f"https://wire{feed}.test/feed.xml",
            feed_name=f"wire {feed}",
            url=f"https://wire{feed}.test/{n}",
            title=f"Story {n} of wire {feed}",
        )
        for n in range(count)
    ]


def items_of(redis_client: redis.Redis, prefix: str, job_ids: list[str]) -> set[str]:
    queue = Queue(Keys(prefix).items_queue, connection=redis_client, serializer=JSONSerializer)
    keys: set[str] = set()
    for job_id in job_ids:
        job = queue.fetch_job(job_id)
        assert job is not None
        keys |= {item.key for item in items_from_payload(job.args[0])}
    return keys


def test_a_call_is_one_transaction_of_jobs(redis_client: redis.Redis, prefix: str) -> None:
    queue = items_queue(redis_client, Keys(prefix))
    ids = enqueue_batches(queue, feed_items(1, 5), batch_size=2, job_timeout=60)
    assert len(ids) == 3 and queue.count == 3
    assert items_of(redis_client, prefix, ids) == {item.key for item in feed_items(1, 5)}
    assert enqueue_batches(queue, [], batch_size=100, job_timeout=60) == []


def test_a_failed_commit_fails_the_call(prefix: str) -> None:
    broken = redis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
    queue = items_queue(broken, Keys(prefix))
    with pytest.raises(redis.ConnectionError):
        enqueue_batches(queue, feed_items(1, 2), batch_size=100, job_timeout=60)


@contextlib.asynccontextmanager
async def loop_enqueuer(
    prefix: str, client: aioredis.Redis, sync: redis.Redis
) -> AsyncIterator[LoopEnqueuer]:
    """A LoopEnqueuer as the poller makes one; it and both clients closed on the way out."""
    enqueuer = LoopEnqueuer(client, items_queue(sync, Keys(prefix)), Keys(prefix))
    try:
        yield enqueuer
    finally:
        await enqueuer.close()
        sync.close()
        await client.aclose()


def clients(redis_url: str) -> tuple[aioredis.Redis, redis.Redis]:
    """The poller's two clients of the test's Redis: asyncio, and rq's sync one."""
    return aioredis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)


def hand(
    enqueuer: LoopEnqueuer, feed: int, count: int = 1, batch_size: int = 100
) -> Coroutine[Any, Any, list[str]]:
    """One poll's hand-over of ``count`` items of wire ``feed`` (a coroutine)."""
    return enqueuer.enqueue(feed_items(feed, count), batch_size=batch_size, job_timeout=60)


async def _hand_over(
    redis_url: str, prefix: str, polls: dict[int, int], *, batch_size: int = 100
) -> dict[int, list[str]]:
    """Each poll (feed → item count) hands over at the same moment, as the loop runs them."""
    async with loop_enqueuer(prefix, *clients(redis_url)) as enqueuer:
        calls = [hand(enqueuer, feed, count, batch_size) for feed, count in polls.items()]
        return dict(zip(polls, await asyncio.gather(*calls), strict=True))


def test_a_lone_hand_over_is_its_own_job(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    ids = asyncio.run(_hand_over(redis_url, prefix, {1: 2}))
    queue = items_queue(redis_client, Keys(prefix))
    assert len(ids[1]) == 1 and queue.count == 1
    (job,) = queue.get_jobs()
    assert job.func_name == "workers.jobs.process_batch"
    counted = Keys(prefix).metric(ITEMS_ENQUEUED.name)
    assert redis_client.hget(counted, label_field(())) == b"2"  # in the same MULTI


def test_hand_overs_of_one_moment_share_jobs(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    """No backlog, so no wait: calls made before the commit starts go in it together,
    their items cut into jobs of ``batch_size``."""
    polls = {feed: 3 for feed in range(6)}
    ids = asyncio.run(_hand_over(redis_url, prefix, polls, batch_size=10))
    queue = items_queue(redis_client, Keys(prefix))
    assert queue.count == 2  # 18 items in jobs of 10, not one job per poll
    for feed, job_ids in ids.items():
        assert {item.key for item in feed_items(feed, 3)} <= items_of(redis_client, prefix, job_ids)
    assert all(len(job.args[0]["items"]) <= 10 for job in queue.get_jobs())


@pytest.mark.parametrize("behind", ["a backlog", "every worker busy"])
def test_with_the_workers_behind_a_group_waits_for_more(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    behind: str,
) -> None:
    """The first commit learns that the workers are behind (its RPUSH finds jobs waiting,
    or rq's registries say every worker of the queue is busy): the next group waits
    COALESCE_S, so hand-overs that come during the wait join it."""
    monkeypatch.setattr(enqueue_loop, "COALESCE_S", 0.2)
    queue = items_queue(redis_client, Keys(prefix))
    if behind == "a backlog":
        enqueue_batches(queue, feed_items(0, 1), batch_size=100, job_timeout=60)
    else:  # the queue's one worker is working on a job
        redis_client.sadd(WORKERS_BY_QUEUE_KEY % queue.name, "rq:worker:w1")
        redis_client.zadd(queue.started_job_registry.key, {"job-1:exec-1": time.time()})

    async def run() -> dict[int, list[str]]:
        async with loop_enqueuer(prefix, *clients(redis_url)) as enqueuer:
            first = await hand(enqueuer, 1)
            later = []
            for feed in (2, 3, 4):  # 50 ms apart: without the wait, three commits
                later.append(asyncio.create_task(hand(enqueuer, feed)))
                await asyncio.sleep(0.05)
            return {1: first} | dict(zip((2, 3, 4), await asyncio.gather(*later), strict=True))

    ids = asyncio.run(run())
    assert ids[2] == ids[3] == ids[4] and ids[1] != ids[2]
    assert len({job_id for job_ids in ids.values() for job_id in job_ids}) == 2


def test_with_a_worker_idle_and_no_backlog_nothing_waits(
    redis_url: str, redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enqueue_loop, "COALESCE_S", 5.0)
    queue = items_queue(redis_client, Keys(prefix))
    redis_client.sadd(WORKERS_BY_QUEUE_KEY % queue.name, "rq:worker:w1")

    async def run() -> float:
        client, sync = clients(redis_url)
        async with loop_enqueuer(prefix, client, sync) as enqueuer:
            await hand(enqueuer, 1)
            await client.lpop(queue.key)  # the worker took it
            started = time.monotonic()
            await hand(enqueuer, 2)
            return time.monotonic() - started

    assert asyncio.run(run()) < 1.0


BROKEN_SOCKET = "/nonexistent/redis.sock"


def test_a_failed_commit_fails_every_call_of_its_group(prefix: str) -> None:
    """Redis unreachable: rq's first question (the server's version) fails."""

    async def run() -> list[BaseException | list[str]]:
        client = aioredis.Redis(unix_socket_path=BROKEN_SOCKET, retry=AsyncRetry(NoBackoff(), 0))
        sync = redis.Redis(unix_socket_path=BROKEN_SOCKET, retry=Retry(NoBackoff(), 0))
        async with loop_enqueuer(prefix, client, sync) as enqueuer:
            calls = [hand(enqueuer, feed) for feed in range(3)]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(result, redis.ConnectionError) for result in results)


def test_a_failed_multi_fails_its_group_and_the_next_hand_over_commits(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    """The MULTI itself fails (the loop's client cannot reach Redis): every call of the
    group raises, nothing is half-written, and once Redis answers again the next
    hand-over starts a commit of its own."""

    async def run() -> tuple[list[BaseException | list[str]], list[str]]:
        client = aioredis.Redis(unix_socket_path=BROKEN_SOCKET, retry=AsyncRetry(NoBackoff(), 0))
        async with loop_enqueuer(prefix, client, redis.Redis.from_url(redis_url)) as enqueuer:
            results = await asyncio.gather(
                *(hand(enqueuer, feed) for feed in range(3)), return_exceptions=True
            )
            enqueuer._client = back = aioredis.Redis.from_url(redis_url)  # Redis answers again
            try:
                return results, await hand(enqueuer, 9)
            finally:
                await back.aclose()

    results, later = asyncio.run(run())
    assert all(isinstance(result, redis.ConnectionError) for result in results)
    assert items_queue(redis_client, Keys(prefix)).count == 1
    assert items_of(redis_client, prefix, later) == {"f9#0"}


def test_a_cancelled_caller_leaves_the_others_commit_alone(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    """A poll cut off at its deadline while its hand-over waits does not cancel the
    commit that holds the other polls' items."""

    async def run() -> list[str]:
        async with loop_enqueuer(prefix, *clients(redis_url)) as enqueuer:
            first, cut_off, other = (asyncio.create_task(hand(enqueuer, f)) for f in (1, 2, 3))
            await asyncio.sleep(0)
            cut_off.cancel()
            await first
            return await other

    ids = asyncio.run(run())
    assert "f3#0" in items_of(redis_client, prefix, ids)


def test_an_items_json_holds_every_field_and_reads_back() -> None:
    """Item.to_json is written field by field (asdict was slow): a field added to Item
    must be added there too."""
    item = Item(
        key="k",
        feed_url="https://wire.test/feed.xml",
        feed_name="wire",
        url="https://wire.test/1",
        title="t",
        summary="s",
        guid="g",
        published=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        tags=("a", "b"),
        language="en",
    )
    assert set(item.to_json()) == {f.name for f in fields(Item)}
    assert Item.from_json(json.loads(json.dumps(item.to_json()))) == item
