"""``wirewatch work``: an rq worker for the alerts and items queues.

Resources are loaded before ``Worker.work()`` so each forked work-horse inherits them.
The worker runs rq's scheduler too: rq's retry intervals need one, and it is safe to
run in every worker (they take a lock). rq handles SIGTERM as a warm shutdown (finish
the current job) and a second signal as a cold one.
"""

from __future__ import annotations

import redis
import structlog
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from monitor.config import Config
from workers import resources

log = structlog.get_logger()

# rq's registry clean-up requeues the jobs of workers that died; by default it runs
# every 10 minutes. A monitoring service wants them back within a minute.
MAINTENANCE_INTERVAL_S = 30


def run_worker(config: Config, redis_url: str, *, burst: bool = False) -> bool:
    """Work until stopped (or, with ``burst``, until the queues are empty)."""
    res = resources.load(config)
    connection = redis.Redis.from_url(redis_url)
    queues = [
        Queue(name, connection=connection, serializer=JSONSerializer)
        for name in (res.keys.alerts_queue, res.keys.items_queue)  # deliveries first
    ]
    worker = Worker(
        queues,
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL_S,
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
