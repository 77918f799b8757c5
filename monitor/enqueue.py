"""Hand new items to the workers: rq jobs of up to ``poller.batch_size`` items each.

Role: the poller's only outbound edge towards ``workers``. Jobs reference the worker
function by dotted path (:data:`JOB_FUNCTION`), so ``monitor`` imports nothing from
``workers``; the argument is the small, versioned JSON of
:func:`monitor.items.batch_payload`, serialised with rq's ``JSONSerializer`` (no pickle).

Inputs: an rq ``Queue`` built by :func:`items_queue` on a *sync* ``redis.Redis`` (rq 2.x
is synchronous: the poller calls :func:`enqueue_batches` through ``asyncio.to_thread``),
the items, and the settings that shape a job.

Output: the ids of the enqueued jobs, in batch order.

Invariants:

- one job per batch, never one per item; all batches of one call are pushed in one
  Redis transaction (``enqueue_many``), so a poll enqueues all of its items or none;
- a job's description is a short summary, not rq's default call string, which would
  copy the whole payload a second time into the job's hash;
- the items are counted (``wirewatch_items_enqueued_total``, :mod:`monitor.metrics`)
  in the same transaction as the jobs: counted once, with no round trip of its own;
- jobs retry 3 times (at once, then after 30 s and 120 s; the rq worker needs its scheduler for the
  delays) and failed jobs are kept 7 days for inspection;
- a job that succeeded is kept :data:`RESULT_TTL` (rq's default: 500 s): nothing reads
  its return value (the batch's summary is logged), and at 300 items/s rq's default
  would hold ~150,000 items' payloads in Redis. Not 0: rq 2.12 then deletes the job at
  once, which costs 7 more round trips a job (status reads, executions) than an EXPIRE.

Coalescing (why: a poll usually brings 1–3 new items, and a worker pays a fixed cost
per job — rq's bookkeeping, a handful of Redis round trips, a NER call — that is several
times an item's own): concurrent hand-overs are pushed as group commits. While one
commit is in flight, the hand-overs that arrive gather behind it and go as the next one
(their items cut into jobs of ``batch_size`` together, in one MULTI): no wait is added,
and several polls that finish within a few milliseconds share jobs. When the items queue
already holds jobs (the workers are behind, so a few milliseconds cost no latency), a
group also waits :data:`COALESCE_S` for more. Each call still returns only when its
items are in Redis (or raises, if the group's transaction failed), so "enqueue first,
mark seen after" and "all of a poll's items or none" hold for every poll; the job ids a
call returns are those of the jobs holding its items. A lone hand-over is pushed at
once, as its own job(s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis
from rq import Callback, Queue, Retry
from rq.serializers import JSONSerializer

from monitor.items import Item, batch_payload
from monitor.keys import Keys
from monitor.metrics import ITEMS_ENQUEUED, label_field

JOB_FUNCTION = "workers.jobs.process_batch"
ON_FAILURE = "workers.jobs.batch_job_failed"  # releases the batch's dedupe claims
# The first retry at once: a batch whose worker died must not wait for rq's scheduler
# (which may have died with it); later ones give a broken dependency time to recover.
RETRY_INTERVALS = (0, 30, 120)
FAILURE_TTL = 7 * 24 * 3600
RESULT_TTL = 60  # seconds a finished batch job stays (see the module docstring)
COALESCE_S = 0.05  # how long a group waits for more hand-overs (only when backed up)


def items_queue(connection: redis.Redis, keys: Keys) -> Queue:
    """The items queue; ``connection`` must not decode responses (rq needs bytes)."""
    return Queue(keys.items_queue, connection=connection, serializer=JSONSerializer)


def batches(items: Sequence[Item], size: int) -> list[list[Item]]:
    """``items`` cut into consecutive lists of at most ``size``, order kept."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


@dataclass
class _Group:
    """Hand-overs gathered for one commit; the first caller (the leader) commits it."""

    requests: list[list[Item]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    job_ids: list[list[str]] = field(default_factory=list)
    error: BaseException | None = None


_groups_lock = threading.Lock()
_open_groups: dict[tuple[object, ...], _Group] = {}  # per shape: the group still open
_commit_locks: dict[tuple[object, ...], threading.Lock] = {}  # per shape: one commit at a time


def enqueue_batches(
    queue: Queue,
    items: Sequence[Item],
    *,
    batch_size: int,
    job_timeout: int,
    keys: Keys | None = None,
) -> list[str]:
    """Enqueue ``items`` as batch jobs (blocking: call it in a thread); returns job ids.

    ``keys``: where the count of enqueued items goes; by default the keys whose
    :attr:`~monitor.keys.Keys.items_queue` is ``queue`` (see :func:`items_queue`).
    Concurrent calls may share jobs (see the module docstring)."""
    if not items:
        return []
    keys = keys or Keys(queue.name.removesuffix("items"))
    # One group per queue, connection and job shape: only such calls can share a job.
    shape = (queue.name, id(queue.connection), batch_size, job_timeout, keys.prefix)
    with _groups_lock:
        group = _open_groups.get(shape)
        leader = group is None
        if group is None:
            group = _open_groups[shape] = _Group()
            commit_lock = _commit_locks.setdefault(shape, threading.Lock())
        index = len(group.requests)
        group.requests.append(list(items))
    if not leader:
        group.done.wait()
    else:
        try:
            behind = bool(queue.count)  # asked before waiting: our own jobs don't count
            with commit_lock:  # a commit in flight: later hand-overs join this group
                if behind:  # the workers are behind: give other polls a moment to join
                    time.sleep(COALESCE_S)
                with _groups_lock:  # closed: later calls start a group of their own
                    del _open_groups[shape]
                group.job_ids = _commit(queue, group.requests, batch_size, job_timeout, keys)
        except BaseException as exc:
            group.error = exc
            with _groups_lock:
                if _open_groups.get(shape) is group:
                    del _open_groups[shape]
        finally:
            group.done.set()
    if group.error is not None:
        raise group.error
    return group.job_ids[index]


def _commit(
    queue: Queue, requests: list[list[Item]], batch_size: int, job_timeout: int, keys: Keys
) -> list[list[str]]:
    """Every request's items as jobs in one transaction; each request's job ids."""
    owners = [n for n, request in enumerate(requests) for _ in request]
    together = [item for request in requests for item in request]
    cut = batches(together, batch_size)
    datas = [
        Queue.prepare_data(
            JOB_FUNCTION,
            args=(batch_payload(batch),),
            timeout=job_timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
            on_failure=Callback(ON_FAILURE),
            description=_description(batch),
        )
        for batch in cut
    ]
    pipe = queue.connection.pipeline()  # MULTI: the jobs and their count, or nothing
    jobs = queue.enqueue_many(datas, pipeline=pipe)
    pipe.hincrby(keys.metric(ITEMS_ENQUEUED.name), label_field(()), len(together))
    pipe.execute()
    ids: list[list[str]] = [[] for _ in requests]
    position = 0
    for job, batch in zip(jobs, cut, strict=True):
        for owner in dict.fromkeys(owners[position : position + len(batch)]):
            ids[owner].append(job.id)
        position += len(batch)
    return ids


def _description(batch: list[Item]) -> str:
    feeds = list(dict.fromkeys(item.feed_name for item in batch))
    where = repr(feeds[0]) if len(feeds) == 1 else f"{len(feeds)} feeds"
    return f"process_batch {where}: {len(batch)} items"
