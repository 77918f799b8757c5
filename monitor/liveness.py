"""Who is alive and how far behind: poller heartbeats, rq workers and queue backlogs.

Role: the read side shared by ``wirewatch status`` (pollers alive) and the API's
``/readyz`` (all three). Synchronous reads over a ``redis.Redis``; the API calls them in
a thread. Read-only.

- A poller is alive while its ``heartbeat:poller:{name}`` key exists: it is refreshed
  every 2 s with a 10 s TTL and deleted when the poller stops.
- A worker is alive while rq's registry lists it for a queue and its last heartbeat is
  recent (rq drops a worker's key ``worker_ttl`` = 25 s after its last beat anyway).
- A queue's backlog is its length and the age of its oldest waiting job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.keys import Keys
from monitor.redis_text import as_text


@dataclass(frozen=True, slots=True)
class Backlog:
    """One rq queue: jobs waiting, and how long the oldest has waited (s; 0 when empty)."""

    queue: str
    length: int
    oldest_age: float


def pollers_alive(client: redis.Redis, keys: Keys) -> list[str]:
    """Names of the pollers whose heartbeat has not expired, sorted."""
    pattern = keys.poller_heartbeat("*")
    start = len(keys.poller_heartbeat(""))
    names = (as_text(key)[start:] for key in client.scan_iter(match=pattern, count=100))
    return sorted(names)


def workers_alive(client: redis.Redis, keys: Keys, now: float, max_silence: float) -> list[str]:
    """Names of the rq workers listening on the items queue that beat within
    ``max_silence`` seconds of ``now``."""
    queue = Queue(keys.items_queue, connection=client, serializer=JSONSerializer)
    alive = []
    for worker in Worker.all(queue=queue, serializer=JSONSerializer):
        beat = worker.last_heartbeat
        if beat is not None and now - _epoch(beat) <= max_silence:
            alive.append(str(worker.name))
    return sorted(alive)


def backlogs(client: redis.Redis, keys: Keys, now: float) -> list[Backlog]:
    """The items and alerts queues' backlogs (waiting jobs only: not scheduled retries)."""
    found = []
    for name in (keys.items_queue, keys.alerts_queue):
        queue = Queue(name, connection=client, serializer=JSONSerializer)
        length = queue.count
        age = 0.0
        for job_id in queue.get_job_ids(0, 1):  # the head: the oldest waiting job
            try:
                job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
            except NoSuchJobError:  # taken (and finished) meanwhile
                continue
            if job.enqueued_at is not None:
                age = max(0.0, now - _epoch(job.enqueued_at))
        found.append(Backlog(name, length, age))
    return found


def _epoch(when: datetime) -> float:
    """rq keeps naive UTC datetimes."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
