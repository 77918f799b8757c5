"""The poller's hand-over to the workers, on its event loop: group commits, no thread.

Role: :meth:`LoopEnqueuer.enqueue` is how a poll (or a WebSub push) gives its new items
to rq. rq builds the jobs (:func:`monitor.enqueue.job_writes`: its own format, into a
redis-py pipeline that is never executed) and their commands go out through the
poller's asyncio client in one MULTI. Why not rq's own (blocking) client in a thread:
a changed feed then cost ~2–3 ms more of the poller's CPU and wall time — thread
wake-ups and the GIL passed back and forth with the event loop, which at thousands of
polls a second is busy (``bench/README.md``, "Third round").

Group commit (why: a poll usually brings 1–3 new items, and a worker pays a fixed cost
per job — rq's bookkeeping, a handful of Redis round trips, a NER call — that is several
times an item's own): while one commit is in flight, the hand-overs that arrive gather
behind it and go as the next one (their items cut into jobs of ``batch_size`` together,
in one MULTI): no wait is added, and several polls that finish within a few milliseconds
share jobs. When the workers were behind at the last commit — the items queue already
held jobs, or every worker of the queue was busy with one, so a job enqueued now would
wait anyway — the next group also waits :data:`COALESCE_S` for more, and jobs grow
(a worker's CPU per item: 6.5 ms in jobs of 12 items, 5.2 ms in jobs of 100,
``bench.e2e_worker``; the e2e benchmark's paced runs make 15–25 % fewer jobs with the
"every worker busy" test than without, at the same latency). Both facts come back
with that commit (its ``RPUSH`` replies; a ``ZCARD`` of rq's started-jobs registry and
an ``SCARD`` of the queue's workers at the end of the MULTI): no round trip of their own.

Invariants: a call returns only once its items are in Redis, or raises the error of the
transaction that held them — so "enqueue first, mark seen after" and "all of a poll's
items or none" hold for every poll; the job ids a call returns are those of the jobs
holding its items. A caller that is cancelled (a poll cut off at its deadline) does not
cancel the commit of the others' items; its own items may still be enqueued, and the
workers deduplicate them when its next poll brings them again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from rq import Queue
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from monitor.enqueue import job_writes, remember_server_version
from monitor.items import Item
from monitor.keys import Keys

COALESCE_S = 0.05  # how long a group waits for more hand-overs (only when backed up)


@dataclass
class _Request:
    items: list[Item]
    done: asyncio.Future[list[str]]


class LoopEnqueuer:
    """Enqueues items as rq jobs through an asyncio client; concurrent calls share jobs."""

    def __init__(self, client: aioredis.Redis, queue: Queue, keys: Keys) -> None:
        self._client = client
        self._queue = queue  # its sync connection is only asked the server's version, once
        self._keys = keys
        self._started_key = queue.started_job_registry.key  # jobs being worked on
        self._workers_key = WORKERS_BY_QUEUE_KEY % queue.name  # workers of this queue
        self._shape = (100, 300)  # batch size and job timeout: the latest caller's
        self._waiting: list[_Request] = []
        self._committer: asyncio.Task[None] | None = None
        self._behind = False  # at the last commit: a backlog, or every worker busy
        self._version_known = False

    async def enqueue(
        self, items: Sequence[Item], *, batch_size: int, job_timeout: int
    ) -> list[str]:
        """Hand ``items`` over; returns the ids of the jobs that hold them. A group's
        jobs take the settings of its latest call (they differ only across a reload)."""
        if not items:
            return []
        self._shape = (batch_size, job_timeout)
        request = _Request(list(items), asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_all(), name="enqueue")
        # A caller cut off cancels its own future only, never the commit of the others.
        return await request.done

    async def close(self) -> None:
        """Wait for the commit in flight and those queued behind it."""
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)

    async def _commit_all(self) -> None:
        try:
            while self._waiting:
                if self._behind:
                    await asyncio.sleep(COALESCE_S)  # gather more while the workers catch up
                group, self._waiting = self._waiting, []
                try:
                    job_ids = await self._commit([request.items for request in group])
                except Exception as exc:
                    for request in group:
                        if not request.done.done():
                            request.done.set_exception(exc)
                    continue
                for request, ids in zip(group, job_ids, strict=True):
                    if not request.done.done():
                        request.done.set_result(ids)
        finally:
            self._committer = None

    async def _commit(self, requests: list[list[Item]]) -> list[list[str]]:
        if not self._version_known:  # rq asks the server once per connection (blocking)
            await asyncio.to_thread(remember_server_version, self._queue.connection)
            self._version_known = True
        batch_size, job_timeout = self._shape
        writes, job_ids = job_writes(self._queue, requests, batch_size, job_timeout, self._keys)
        async with self._client.pipeline(transaction=True) as pipe:
            pushes = []
            for position, (args, options) in enumerate(writes.command_stack):
                pipe.execute_command(*args, **options)
                if args[0] == "RPUSH":
                    pushes.append(position)
            pipe.zcard(self._started_key)
            pipe.scard(self._workers_key)
            replies = await pipe.execute()
        busy, workers = int(replies[-2]), int(replies[-1])
        # RPUSH answers the queue's length: more than our jobs means a backlog.
        backlog = bool(pushes) and int(replies[pushes[-1]]) > len(pushes)
        self._behind = backlog or 0 < workers <= busy
        return job_ids
