"""``wirewatch work``: an rq worker for the alerts and items queues.

Resources (config, compiled rules, the NER model) are loaded once, before
``Worker.work()``. Jobs run in the worker process itself (:class:`InProcessWorker`, the
default), or with ``workers.fork: true`` in a forked work-horse that inherits them
(:class:`WirewatchWorker`).
The worker runs rq's scheduler too: delivery retries and digests are scheduled jobs, and
it is safe to run in every worker (they take a lock). rq handles SIGTERM as a warm
shutdown (finish the current job) and a second signal as a cold one.

Recovery from a worker that dies (SIGKILL, OOM, power loss): rq keeps a job in its
"started" registry until the worker's heartbeat for it lapses, and only a maintenance
pass of a live worker hands it back. rq's defaults (a 60 s margin on every heartbeat,
maintenance every 10 minutes) would leave an alert stuck for many minutes; here the
heartbeat lapses 15 s after the last beat, maintenance runs every 10 s and an idle worker
wakes at least every 10 s to do it, so another worker retries the job within about half a
minute. The same pass restarts rq's scheduler process if it died (e.g. Redis restarted).

Hot reload (:mod:`monitor.reload`): SIGHUP, or a change of the config files, makes the
worker parent validate the new config and load its resources (:mod:`workers.resources`)
before it dequeues or runs the next job, and when idle. The work-horse of a job in
progress was forked with the old resources and finishes with them; the next job is
forked with the new ones. rq handles SIGTERM/SIGINT only, so SIGHUP is ours.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import redis
import structlog
from redis.client import Pipeline
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now as utc_now
from rq.worker.base import BaseWorker

from monitor.config import Config
from monitor.reload import ConfigWatcher
from workers import resources
from workers.digest_flush import sweep
from workers.malloc_tuning import keep_freed_memory
from workers.outbox import sweep as sweep_outbox

log = structlog.get_logger()

JOB_MONITORING_INTERVAL_S = 5
HEARTBEAT_MARGIN_S = 10
MAINTENANCE_INTERVAL_S = 10
# An idle worker blocks in BLPOP for worker_ttl - 15 s and runs its maintenance only
# between two waits; rq's default (420 s) would leave a dead worker's job, or a dead
# scheduler process, alone for 7 minutes. 25 s: a wait of at most 10 s.
WORKER_TTL_S = 25
# rq renews the worker's own key (an HSET and an EXPIRE, two round trips) three times per
# job; its TTL is WORKER_TTL_S + 60 s, so once a second is plenty.
WORKER_BEAT_EVERY_S = 1.0
MAX_RESTART_PAUSE_S = 30.0
# A loop that lasted this long before ending starts the pause over (from 1 s): the
# doubling is for Redis staying away, not for every outage in a worker's life.
HEALTHY_RUN_S = 60.0


class _Wirewatch(BaseWorker):
    """What both kinds of worker add to rq's: a short heartbeat, so a dead worker's job
    is found soon; the digest and outbox sweeps in maintenance; a config reload before
    each job."""

    # Set by run_worker: looks for a new config and applies it (see the module doc).
    reload: Callable[[], object] | None = None

    def get_heartbeat_ttl(self, job: Job) -> int:
        return JOB_MONITORING_INTERVAL_S + HEARTBEAT_MARGIN_S

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """rq's worker heartbeat, in one round trip and at most every
        :data:`WORKER_BEAT_EVERY_S` when rq renews it in passing (between jobs). The
        beats rq sends with a job's TTL, and the job's own heartbeat in the started
        registry (what finds a dead worker's job), are untouched."""
        if timeout is not None or pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        last = self.last_heartbeat
        if last is not None and (utc_now() - last).total_seconds() < WORKER_BEAT_EVERY_S:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(pipeline=pipe)
            pipe.execute()

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        # Our own recovery: digests whose flush was never scheduled (see digest_flush).
        with contextlib.suppress(redis.RedisError):
            sweep(self.connection, resources.current())
        with contextlib.suppress(redis.RedisError):
            sweep_outbox(self.connection, resources.current())
        self._reload()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        self._reload()
        result: tuple[Job, Queue] | None = super().dequeue_job_and_maintain_ttl(
            timeout, max_idle_time
        )
        return result

    def execute_job(self, job: Job, queue: Queue) -> None:
        # Before the job (in a forking worker: in the parent, before the fork), so this
        # job runs with the newest valid config.
        self._reload()
        super().execute_job(job, queue)

    def _reload(self) -> None:
        if self.reload is not None:
            self.reload()


class WirewatchWorker(_Wirewatch, Worker):
    """``workers.fork: true``: rq's forking worker. Each job runs in a fresh child: a job
    that crashes or leaks takes nothing with it, but every job pays a fork of the ~400 MB
    process holding the NER model and its copy-on-write faults (``bench/e2e.py``)."""


class InProcessWorker(_Wirewatch, SimpleWorker):
    """The default (``workers.fork: false``): jobs run in the worker process itself.

    rq's :class:`~rq.SimpleWorker` does not fork, so a batch costs what its work costs.
    What the forking parent did while a child worked is done here by a thread: renew the
    worker's and the job's heartbeats every ``JOB_MONITORING_INTERVAL_S``, so a long job
    is not taken for a dead worker's (and a dead worker's job is still found within
    ~25 s). Job timeouts still hold (rq's SIGALRM, in this main thread).
    """

    def execute_job(self, job: Job, queue: Queue) -> None:
        done = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(job, done), name="job-heartbeat", daemon=True
        )
        beat.start()
        try:
            super().execute_job(job, queue)  # reloads first, then SimpleWorker runs it here
        finally:
            done.set()
            beat.join()

    def _beat(self, job: Job, done: threading.Event) -> None:
        while not done.wait(JOB_MONITORING_INTERVAL_S):
            try:
                self.maintain_heartbeats(job)
            except Exception as exc:  # a lost beat is retried; never kill the job for it
                log.warning("job_heartbeat_failed", job_id=job.id, reason=str(exc))


def run_worker(config: Config, redis_url: str, *, burst: bool = False) -> bool:
    """Work until stopped (or, with ``burst``, until the queues are empty).

    rq's loop ends by itself when Redis vanishes mid-job ("found an unhandled exception,
    quitting"); a monitoring worker must not: it waits and starts a new loop, with a
    growing pause, until it is asked to stop.
    """
    watcher = ConfigWatcher(config, role="worker", check_query=_query_error)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: watcher.request())
    resources.load(config)
    # The job functions and what they import (datasketch pulls in scipy: ~0.5 s) load
    # now, not in the first batch (nor, forking, in every work-horse).
    importlib.import_module("workers.jobs")

    def reload() -> bool:
        return watcher.check(lambda new: resources.load(new, previous=resources.current()))

    pause = 1.0
    previous: _Wirewatch | None = None
    while True:
        if previous is not None:
            _release_scheduler(previous)
        started = time.monotonic()
        connection = redis.Redis.from_url(redis_url)
        worker: _Wirewatch | None = None
        worked = False
        try:
            res = resources.current()
            worker = new_worker(res, connection)  # rq talks to Redis here already
            worker.reload = reload
            log.info(
                "worker_started",
                worker=worker.name,
                queues=worker.queue_names(),
                rules=len(res.rules),
                ner=res.extractor.name,
                malloc_tuned=keep_freed_memory(),  # applied when the model loaded
            )
            worked = bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
        except redis.RedisError as exc:
            log.error("worker_redis_error", reason=str(exc))
        finally:
            if worker is not None:
                log.info("worker_stopped", worker=worker.name)
            connection.close()
        if burst or (worker is not None and _asked_to_stop(worker)):
            return worked
        if time.monotonic() - started > HEALTHY_RUN_S:
            pause = 1.0  # a loop that ran well for a while: this outage is a new one
        log.error(
            "worker_loop_ended",
            reason="rq's worker loop ended without a stop request (Redis unreachable?)",
            restart_in_s=pause,
        )
        time.sleep(pause)
        pause = min(pause * 2, MAX_RESTART_PAUSE_S)
        previous = worker


def _query_error(rule_id: str, query: str, term_sets: Mapping[str, Sequence[str]]) -> str | None:
    """The check ``wirewatch check`` runs on every rule (imported here, not at the top:
    ``workers.api`` imports this module)."""
    from workers.api import query_error

    return query_error(rule_id, query, term_sets)


def _release_scheduler(worker: _Wirewatch) -> None:
    """Give up the scheduler locks a dead loop held (they outlive a Redis restart with
    AOF for a minute), so the new loop's scheduler takes over at once: delivery retries
    and digests are scheduled jobs."""
    scheduler = getattr(worker, "scheduler", None)
    if scheduler is not None:
        with contextlib.suppress(redis.RedisError):
            scheduler.release_locks()


def _asked_to_stop(worker: _Wirewatch) -> bool:
    """A signal asked rq to stop (idle workers stop at once, busy ones after the job)."""
    return bool(worker._stop_requested or worker._shutdown_requested_date is not None)


def new_worker(res: resources.Resources, connection: redis.Redis) -> _Wirewatch:
    queues = [
        Queue(name, connection=connection, serializer=JSONSerializer)
        for name in (res.keys.alerts_queue, res.keys.items_queue)  # deliveries first
    ]
    kind: type[_Wirewatch] = WirewatchWorker if res.config.workers.fork else InProcessWorker
    return kind(
        queues,
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL_S,
        job_monitoring_interval=JOB_MONITORING_INTERVAL_S,
        worker_ttl=WORKER_TTL_S,
    )
