"""Hand new items to the workers: rq jobs of up to ``poller.batch_size`` items each.

Role: the poller's only outbound edge towards ``workers``. Jobs reference the worker
function by dotted path (:data:`JOB_FUNCTION`), so ``monitor`` imports nothing from
``workers``; the argument is the small, versioned JSON of
:func:`monitor.items.batch_payload`, serialised with rq's ``JSONSerializer`` (no pickle).

Inputs: an rq ``Queue`` built by :func:`items_queue` on a *sync* ``redis.Redis``, the
items, and the settings that shape a job. rq 2.x is synchronous, but it only *writes*
when it enqueues: :func:`job_writes` lets rq fill a redis-py pipeline that is never
executed here, and its commands go out either through that sync client
(:func:`enqueue_batches`, one call, one transaction) or through the poller's asyncio
client (:mod:`monitor.enqueue_loop`, which also groups concurrent polls' hand-overs) —
no thread, no second copy of rq's job format.

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
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from rq import Callback, Queue, Retry
from rq import utils as rq_utils
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


def items_queue(connection: redis.Redis, keys: Keys) -> Queue:
    """The items queue; ``connection`` must not decode responses (rq needs bytes)."""
    return Queue(keys.items_queue, connection=connection, serializer=JSONSerializer)


def batches(items: Sequence[Item], size: int) -> list[list[Item]]:
    """``items`` cut into consecutive lists of at most ``size``, order kept."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def enqueue_batches(
    queue: Queue,
    items: Sequence[Item],
    *,
    batch_size: int,
    job_timeout: int,
    keys: Keys | None = None,
) -> list[str]:
    """Enqueue ``items`` as batch jobs in one transaction (blocking); returns job ids.

    ``keys``: where the count of enqueued items goes; by default the keys whose
    :attr:`~monitor.keys.Keys.items_queue` is ``queue`` (see :func:`items_queue`)."""
    if not items:
        return []
    keys = keys or Keys(queue.name.removesuffix("items"))
    pipe, ids = job_writes(queue, [list(items)], batch_size, job_timeout, keys)
    pipe.execute()
    return ids[0]


def job_writes(
    queue: Queue, requests: Sequence[Sequence[Item]], batch_size: int, job_timeout: int, keys: Keys
) -> tuple[redis.client.Pipeline, list[list[str]]]:
    """Every request's items as jobs: a MULTI pipeline holding rq's writes (not executed),
    and each request's job ids. Reads nothing from Redis once rq knows the server's
    version (cached on ``queue.connection``: :func:`remember_server_version`)."""
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
    ids: list[list[str]] = [[] for _ in requests]
    position = 0
    for job, batch in zip(jobs, cut, strict=True):
        for owner in dict.fromkeys(owners[position : position + len(batch)]):
            ids[owner].append(job.id)
        position += len(batch)
    return pipe, ids


def remember_server_version(connection: redis.Redis) -> None:
    """Ask the server's version once (blocking), so that :func:`job_writes` never does:
    rq reads it for every new job and caches it on the connection object."""
    rq_utils.get_version(connection)


def _description(batch: list[Item]) -> str:
    feeds = list(dict.fromkeys(item.feed_name for item in batch))
    where = repr(feeds[0]) if len(feeds) == 1 else f"{len(feeds)} feeds"
    return f"process_batch {where}: {len(batch)} items"
