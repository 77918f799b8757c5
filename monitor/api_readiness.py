"""``/readyz``: can this deployment do its job right now? ``/healthz``: is this process up?

Ready means: Redis answers and takes a write (a Redis at ``maxmemory`` with
``noeviction`` answers pings but refuses every write); at least one poller's heartbeat
is live; at least one rq worker listening on the items queue beat within
:data:`WORKER_SILENCE_S`; and neither
the items nor the alerts queue is backed up (more than ``api.max_queue_length`` jobs
waiting, or the oldest waiting longer than ``api.max_queue_age``). Not ready answers
503 with every reason, so one probe says all that is wrong.

:func:`assess` is the pure decision; :func:`probe` reads Redis (blocking: run it in a
thread) through :mod:`monitor.liveness`, the readers ``wirewatch status`` uses too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import redis
from aiohttp import web

from monitor.api_context import CONFIG, KEYS, REDIS
from monitor.api_state import SYNC_REDIS
from monitor.config import ApiSettings
from monitor.keys import Keys
from monitor.liveness import Backlog, backlogs, pollers_alive, workers_alive

WORKER_SILENCE_S = 60.0  # rq workers beat at least every 25 s (worker_ttl) here
PING_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Probe:
    pollers: list[str]
    workers: list[str]
    queues: list[Backlog]


def assess(found: Probe, settings: ApiSettings) -> list[str]:
    """Why the deployment is not ready; empty when it is."""
    reasons = []
    if not found.pollers:
        reasons.append("no poller alive (no live heartbeat:poller:* key)")
    if not found.workers:
        reasons.append(f"no rq worker on the items queue beat in the last {WORKER_SILENCE_S:.0f} s")
    for queue in found.queues:
        if queue.length > settings.max_queue_length:
            reasons.append(
                f"queue {queue.queue} backed up: {queue.length} jobs waiting"
                f" (more than {settings.max_queue_length})"
            )
        if queue.oldest_age > settings.max_queue_age:
            reasons.append(
                f"queue {queue.queue} backed up: oldest job waiting {queue.oldest_age:.0f} s"
                f" (more than {settings.max_queue_age:.0f} s)"
            )
    return reasons


def probe(client: redis.Redis, keys: Keys, now: float) -> Probe:
    """Everything :func:`assess` needs, read from Redis (blocking)."""
    return Probe(
        pollers=pollers_alive(client, keys),
        workers=workers_alive(client, keys, now, WORKER_SILENCE_S),
        queues=backlogs(client, keys, now),
    )


async def healthz(_request: web.Request) -> web.Response:
    """The process is up and serving: nothing else is checked (a liveness probe)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    refused: list[str] = []
    try:
        await asyncio.wait_for(app[REDIS].ping(), PING_TIMEOUT_S)
        try:  # a Redis that answers but takes no writes (maxmemory with noeviction)
            probe_key = f"{app[KEYS].prefix}readyz:probe"
            await asyncio.wait_for(app[REDIS].set(probe_key, "1", ex=60), PING_TIMEOUT_S)
        except redis.ResponseError as exc:
            refused.append(f"redis refuses writes: {exc}")
        found = await asyncio.to_thread(probe, app[SYNC_REDIS], app[KEYS], time.time())
    except (redis.RedisError, OSError, TimeoutError) as exc:
        reason = f"redis unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
        return web.json_response({"status": "not ready", "reasons": [reason]}, status=503)
    reasons = refused + assess(found, app[CONFIG].current.api)
    body = {
        "status": "not ready" if reasons else "ready",
        "reasons": reasons,
        "pollers": found.pollers,
        "workers": found.workers,
        "queues": [asdict(queue) for queue in found.queues],
    }
    return web.json_response(body, status=503 if reasons else 200)
