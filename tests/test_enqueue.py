"""Hand-overs to the workers (monitor/enqueue.py): concurrent polls share jobs when the
workers are behind, every call still returns only once its items are in Redis."""

from __future__ import annotations

import threading

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.enqueue import enqueue_batches, items_queue
from monitor.items import Item, items_from_payload
from monitor.keys import Keys


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


def test_with_an_empty_queue_each_hand_over_is_its_own_job(
    redis_client: redis.Redis, prefix: str
) -> None:
    queue = items_queue(redis_client, Keys(prefix))
    first = enqueue_batches(queue, feed_items(1, 2), batch_size=100, job_timeout=60)
    assert len(first) == 1 and queue.count == 1
    assert enqueue_batches(queue, [], batch_size=100, job_timeout=60) == []


def test_concurrent_hand_overs_share_jobs_when_the_workers_are_behind(
    redis_client: redis.Redis, prefix: str
) -> None:
    queue = items_queue(redis_client, Keys(prefix))
    enqueue_batches(queue, feed_items(0, 1), batch_size=100, job_timeout=60)  # a backlog
    polls = 6
    results: dict[int, list[str]] = {}
    barrier = threading.Barrier(polls)

    def poll(feed: int) -> None:
        own = items_queue(redis_client, Keys(prefix))  # a queue object per call, as polls do
        barrier.wait()
        results[feed] = enqueue_batches(own, feed_items(feed, 3), batch_size=10, job_timeout=60)

    threads = [threading.Thread(target=poll, args=(feed,)) for feed in range(1, polls + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == polls
    # 18 items in fewer jobs than polls (the exact grouping depends on thread timing).
    assert queue.count - 1 < polls
    for feed, job_ids in results.items():
        assert {item.key for item in feed_items(feed, 3)} <= items_of(redis_client, prefix, job_ids)
    every = {item.key for job in queue.get_jobs()[1:] for item in items_from_payload(job.args[0])}
    assert len(every) == 3 * polls
    assert all(len(job.args[0]["items"]) <= 10 for job in queue.get_jobs())


def test_hand_overs_during_a_commit_share_the_next_one_with_an_empty_queue(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Group commit: no backlog, so no wait; those arriving while a commit is in flight
    go together in the next one."""
    queue = items_queue(redis_client, Keys(prefix))
    polls = 6
    results: dict[int, list[str]] = {}
    barrier = threading.Barrier(polls)

    def poll(feed: int) -> None:
        own = items_queue(redis_client, Keys(prefix))
        barrier.wait()
        results[feed] = enqueue_batches(own, feed_items(feed, 2), batch_size=100, job_timeout=60)

    threads = [threading.Thread(target=poll, args=(feed,)) for feed in range(polls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == polls
    assert queue.count < polls  # without group commits: one job per poll
    for feed, job_ids in results.items():
        assert {item.key for item in feed_items(feed, 2)} <= items_of(redis_client, prefix, job_ids)


def test_a_failed_commit_fails_the_call(prefix: str) -> None:
    broken = redis.Redis(unix_socket_path="/nonexistent/redis.sock")
    queue = items_queue(broken, Keys(prefix))
    with pytest.raises(redis.ConnectionError):
        enqueue_batches(queue, feed_items(1, 2), batch_size=100, job_timeout=60)
