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
- jobs retry 3 times (5 s, 30 s, 120 s; the rq worker needs its scheduler for the
  delays) and failed jobs are kept 7 days for inspection.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """Enqueue ``items`` as batch jobs (blocking: call it in a thread); returns job ids.

    ``keys``: where the count of enqueued items goes; by default the keys whose
    :attr:`~monitor.keys.Keys.items_queue` is ``queue`` (see :func:`items_queue`)."""
    datas = [
        Queue.prepare_data(
            JOB_FUNCTION,
            args=(batch_payload(batch),),
            timeout=job_timeout,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
            on_failure=Callback(ON_FAILURE),
            description=f"process_batch {batch[0].feed_name!r}: {len(batch)} items",
        )
        for batch in batches(items, batch_size)
    ]
    if not datas:
        return []
    keys = keys or Keys(queue.name.removesuffix("items"))
    pipe = queue.connection.pipeline()  # MULTI: the jobs and their count, or nothing
    jobs = queue.enqueue_many(datas, pipeline=pipe)
    pipe.hincrby(keys.metric(ITEMS_ENQUEUED.name), label_field(()), len(items))
    pipe.execute()
    return [job.id for job in jobs]
