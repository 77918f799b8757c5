"""``wirewatch work``: an rq worker for the alerts and items queues.

Resources are loaded before ``Worker.work()`` so each forked work-horse inherits them.
The worker runs rq's scheduler too: delivery retries and digests are scheduled jobs, and
it is safe to run in every worker (they take a lock). rq handles SIGTERM as a warm
shutdown (finish the current job) and a second signal as a cold one.

Recovery from a worker that dies (SIGKILL, OOM, power loss): rq keeps a job in its
"started" registry until the worker's heartbeat for it lapses, and only a maintenance
pass of a live worker hands it back. rq's defaults (a 60 s margin on every heartbeat,
maintenance every 10 minutes) would leave an alert stuck for many minutes; here the
heartbeat lapses 15 s after the last beat and maintenance runs every 10 s, so another
worker retries the job within about half a minute.
"""

from __future__ import annotations

import redis
import structlog
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.config import Config
from workers import resources

log = structlog.get_logger()

JOB_MONITORING_INTERVAL_S = 5
HEARTBEAT_MARGIN_S = 10
MAINTENANCE_INTERVAL_S = 10


class WirewatchWorker(Worker):
    """rq's forking worker with a short heartbeat, so a dead worker's job is found soon."""

    def get_heartbeat_ttl(self, job: Job) -> int:
        return JOB_MONITORING_INTERVAL_S + HEARTBEAT_MARGIN_S


def run_worker(config: Config, redis_url: str, *, burst: bool = False) -> bool:
    """Work until stopped (or, with ``burst``, until the queues are empty)."""
    res = resources.load(config)
    connection = redis.Redis.from_url(redis_url)
    queues = [
        Queue(name, connection=connection, serializer=JSONSerializer)
        for name in (res.keys.alerts_queue, res.keys.items_queue)  # deliveries first
    ]
    worker = WirewatchWorker(
        queues,
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL_S,
        job_monitoring_interval=JOB_MONITORING_INTERVAL_S,
    )
    log.info(
        "worker_started",
        worker=worker.name,
        queues=[queue.name for queue in queues],
        rules=len(res.rules),
        ner=res.extractor.name,
    )
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
    finally:
        log.info("worker_stopped", worker=worker.name)
        connection.close()
