"""A long job in an in-process worker keeps its heartbeat: it is not taken for a dead
worker's job while it runs (rq hands abandoned jobs back once their heartbeat lapses,
``JOB_MONITORING_INTERVAL_S + HEARTBEAT_MARGIN_S`` = 15 s after the last beat)."""

from __future__ import annotations

import threading
import time

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from monitor.config_loader import parse_config
from monitor.keys import Keys
from workers.worker import HEARTBEAT_MARGIN_S, JOB_MONITORING_INTERVAL_S, run_worker

RUNS: list[float] = []


def slow_job(seconds: float) -> str:
    RUNS.append(time.time())
    time.sleep(seconds)
    return "done"


def test_a_job_longer_than_the_heartbeat_ttl_is_not_taken_for_abandoned(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    config = parse_config(
        f'redis: {{prefix: "{prefix}"}}\nworkers: {{ner: {{enabled: false}}}}', "t.yaml", {}
    )
    queue = Queue(Keys(prefix).items_queue, connection=redis_client, serializer=JSONSerializer)
    seconds = JOB_MONITORING_INTERVAL_S + HEARTBEAT_MARGIN_S + 6  # outlives one TTL
    job = queue.enqueue(slow_job, seconds)
    registry = StartedJobRegistry(queue=queue)
    swept: list[list[str]] = []
    done = threading.Event()

    def sweep() -> None:  # what another worker's maintenance does, every second
        while not done.wait(1):
            swept.append(registry.get_expired_job_ids())
            registry.cleanup()

    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    try:
        run_worker(config, redis_url, burst=True)
    finally:
        done.set()
        sweeper.join()
    assert len(RUNS) == 1
    assert not any(swept), "the running job was seen as abandoned"
    finished = Job.fetch(job.id, connection=redis_client, serializer=JSONSerializer)
    assert finished.get_status() == JobStatus.FINISHED
