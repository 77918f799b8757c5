"""The poller: claims due feeds from the schedule shared in Redis and polls them.

Role: the thin asynchronous shell that decides *which* feeds to poll now. Any number of
pollers, on any number of machines, share one schedule (:mod:`monitor.shared_schedule`);
one poll of one feed is :func:`monitor.feed_poll.poll_feed`.

Inputs: the validated :class:`~monitor.config.Config` and a Redis URL.
Outputs: everything a poll writes (rq jobs, feed state, seen sets), the schedule, a
heartbeat key per poller, and ``poller_started`` / ``poller_stopped`` log lines.

The loop (:meth:`Poller.run`):

1. sync the configured feeds into the schedule (new feeds due now, removed feeds
   dropped, changed intervals applied);
2. claim up to ``concurrency − in flight`` due feeds with one atomic script, each with a
   lease of ``total_timeout + lease_margin`` seconds and the feed's state; claims are
   batched: with polls in flight, the loop waits until an eighth of the slots are free;
3. poll them concurrently; each poll is cut off before its lease ends, then records its
   outcome and sets the feed's next due time (only if it still holds the lease) in one
   script (:meth:`~monitor.shared_schedule.SharedSchedule.finish`);
4. sleep until enough polls have ended to claim again (an eighth of the slots, or the
   last one), the earliest due time, or 1 s — whichever is first — so feeds with
   1-second intervals are honoured and new schedule entries are seen soon.

Resources (created in :meth:`Poller.open`, closed in :meth:`Poller.close`, also via
``async with``): one ``aiohttp.ClientSession`` (User-Agent from config, at most
``poller.concurrency`` connections), one ``redis.asyncio`` client, one sync
``redis.Redis`` for rq (rq 2.x is synchronous; it runs in a thread) and a parse pool
(one process per spare core, at most :data:`MAX_PARSE_PROCESSES`) so feedparser never
stalls the event loop. Every :data:`~monitor.poll_stats.SUMMARY_EVERY` seconds a
``poller_summary`` line counts the polls by outcome (unchanged polls log at debug only).
With ``poller.websub.callback_url`` set, also the WebSub callback server and its request
loop (:mod:`monitor.websub_server`), stopped first; on start the poller unsubscribes
feeds no longer configured.

Hot reload (:meth:`Poller.reconfigure`, called by :mod:`monitor.service`): at the
loop's next turn the new config replaces the old one and the schedule is synced with
it at once (new feeds due now, removed feeds dropped, changed ones rewritten, removed
feeds unsubscribed from their hubs); polls in flight finish with the config they
started with. The session's connection limit and User-Agent and the WebSub server stay
as started (:data:`monitor.config_diff.POLLER_RESTART_ONLY`).

Invariants: a poll never raises; :meth:`Poller.run` returns soon after ``stop`` is set —
no new claims, in-flight polls get ``grace`` seconds, then are cancelled and their feeds
handed back (due now) so another poller takes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import aiohttp
import redis
import redis.asyncio as aioredis
import structlog

from monitor.config import Config, FeedConfig
from monitor.enqueue import items_queue
from monitor.enqueue_loop import LoopEnqueuer
from monitor.feed_poll import Fields, PollContext, PollOutcome, flush_metrics, poll_feed
from monitor.feed_state import HealthChange
from monitor.fetch import FetchLimits
from monitor.health import sweep_unannounced
from monitor.host_limits import HostLimiter
from monitor.keys import Keys, feed_id
from monitor.parse_pool import ParsePool
from monitor.poll_stats import SUMMARY_EVERY
from monitor.redis_pack import use_hiredis_packing
from monitor.reload import generation
from monitor.shared_schedule import Claim, SharedSchedule, SyncReport
from monitor.websub import Subscriber
from monitor.websub_server import CallbackServer

__all__ = ["PollOutcome", "Poller"]

log = structlog.get_logger()

# A poller whose heartbeat has expired is dead: its leased feeds are freed at once.
HEARTBEAT_EVERY = 2.0
NOTICE_SWEEP_EVERY = 30.0  # how often a poller looks for health changes left unannounced
HEARTBEAT_TTL = 10
MAX_SLEEP = 1.0  # the longest the loop sleeps between claims
RESYNC_EVERY = 30.0  # the configured feeds are synced into the schedule this often
CLAIM_BATCH = 8  # with polls in flight, claim once 1/8 of the slots are free
MAX_PARSE_PROCESSES = 4


class Poller:
    """Polls the feeds of the shared schedule; see the module docstring."""

    def __init__(
        self,
        config: Config,
        redis_url: str,
        *,
        grace: float = 10.0,
        rand: Callable[[], float] = random.random,
        name: str | None = None,
    ) -> None:
        self.config = config
        self.redis_url = redis_url
        self.grace = grace
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._rand = rand
        self._keys = Keys(config.redis.prefix)
        self._base_dir: Path | None = config.source.parent if config.source else None
        self._ctx: PollContext | None = None
        self._callbacks: CallbackServer | None = None
        self._feeds: dict[str, tuple[str, FeedConfig]] = {}  # id → (its JSON, parsed)
        self._in_flight: dict[asyncio.Task[None], Claim] = {}
        # The claim loop's wake-up: a flag and the future it sleeps on (no Event and no
        # task per sleep: the loop sleeps and wakes hundreds of times a second).
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._pending: Config | None = None  # a reloaded config, adopted by the loop
        # Orders configs across pollers (see SharedSchedule.sync): the files' mtime.
        self._generation = generation(config)

    @property
    def lease(self) -> float:
        """How long a claim holds a feed: the fetch's total timeout plus a margin."""
        return self.config.poller.total_timeout + self.config.poller.lease_margin

    @property
    def deadline(self) -> float:
        """A poll is cut off here, leaving half the margin to record it."""
        return self.config.poller.total_timeout + self.config.poller.lease_margin / 2

    async def __aenter__(self) -> Poller:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._ctx is not None

    async def open(self) -> None:
        if self._ctx is not None:
            return
        settings = self.config.poller
        # A blocking pool sized to the polls in flight: redis-py's default pool raises
        # "Too many connections" past 100 instead of waiting for one to free up.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.redis_url,
            decode_responses=True,
            max_connections=self.config.poller.concurrency + 16,
            timeout=30,
        )
        use_hiredis_packing(pool)  # a changed poll sends hundreds of arguments
        client = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it
        session = aiohttp.ClientSession(
            headers={"User-Agent": settings.user_agent},
            connector=aiohttp.TCPConnector(limit=settings.concurrency),
        )
        subscriber = None
        if settings.websub.callback_url:
            subscriber = Subscriber(
                client, self._keys, session, settings.websub, timeout=settings.total_timeout
            )
        rq_client = redis.Redis.from_url(self.redis_url)  # rq needs raw bytes
        self._ctx = PollContext(
            config=self.config,
            keys=self._keys,
            name=self.name,
            session=session,
            client=client,
            rq_client=rq_client,
            enqueuer=LoopEnqueuer(client, items_queue(rq_client, self._keys), self._keys),
            parser=ParsePool(_parse_processes()),
            slots=asyncio.Semaphore(settings.concurrency),
            hosts=HostLimiter(settings.per_host_concurrency),
            limits=FetchLimits.from_settings(settings),
            base_dir=self._base_dir,
            rand=self._rand,
            websub=subscriber,
        )
        if subscriber is not None:
            # WebSub: hubs verify and push here; its request loop runs with it.
            callbacks = CallbackServer(self._ctx, subscriber)
            try:
                await callbacks.start()
            except BaseException:
                await self.close()
                raise
            self._callbacks = callbacks

    async def close(self) -> None:
        """Release everything :meth:`open` created, in reverse order."""
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            await callbacks.stop()
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        await ctx.session.close()
        await ctx.parser.close()
        await ctx.enqueuer.close()
        ctx.rq_client.close()
        await ctx.client.aclose()

    def reconfigure(self, config: Config) -> None:
        """Adopt ``config`` at the loop's next turn (see the module docstring)."""
        self._pending = config
        self._wake()

    async def _adopt(self, schedule: SharedSchedule, stop: asyncio.Event) -> None:
        config, self._pending = self._pending, None
        if config is None:
            return
        old, self.config = self.config, config
        self._generation = generation(config)
        ctx = self._context
        hosts = ctx.hosts
        if config.poller.per_host_concurrency != old.poller.per_host_concurrency:
            hosts = HostLimiter(config.poller.per_host_concurrency)
        # Polls in flight keep the context they started with; new ones get this one.
        self._ctx = dataclasses.replace(
            ctx, config=config, hosts=hosts, limits=FetchLimits.from_settings(config.poller)
        )
        report = await self._sync(schedule, stop)
        await self._drop_websub()
        if report is not None:
            log.info(
                "poller_reconfigured",
                poller=self.name,
                feeds=report.total,
                added=report.added,
                removed=report.removed,
                changed=report.changed,
            )

    async def poll_feed(self, feed: FeedConfig) -> PollOutcome:
        """One poll of ``feed`` end to end, outside the schedule. Never raises."""
        return await poll_feed(self._context, feed)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and poll due feeds until ``stop`` is set."""
        opened_here = not self.is_open
        await self.open()
        schedule = SharedSchedule(self._context.client, self._keys)
        await self._beat()  # alive before the first claim
        heartbeat = asyncio.create_task(self._heartbeat(stop, schedule), name="heartbeat")
        stopped = asyncio.ensure_future(stop.wait())
        stopped.add_done_callback(lambda _: self._wake())
        try:
            report = await self._sync(schedule, stop)
            await self._drop_websub()
            log.info(
                "poller_started",
                poller=self.name,
                feeds=report.total if report else None,
                added=report.added if report else None,
                removed=report.removed if report else None,
                lease_s=self.lease,
            )
            await self._loop(schedule, stop)
            if self._in_flight:
                _, pending = await asyncio.wait(list(self._in_flight), timeout=self.grace)
                if pending:
                    log.warning("poller_grace_expired", cancelled=len(pending), grace_s=self.grace)
        finally:
            stopped.cancel()
            await self._cancel_in_flight(schedule)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            with contextlib.suppress(redis.RedisError):
                # Stopped: not alive any more (its feeds were handed back above).
                await self._context.client.delete(self._keys.poller_heartbeat(self.name))
            self._summary()  # the polls since the last summary
            await flush_metrics(self._context)  # the last second's counts
            if opened_here:
                await self.close()
            log.info("poller_stopped", poller=self.name)

    async def _sync(self, schedule: SharedSchedule, stop: asyncio.Event) -> SyncReport | None:
        """Sync the configured feeds; while Redis is unreachable, retry every second."""
        while not stop.is_set():
            try:
                return await schedule.sync(
                    self.config, lease=self.lease, generation=self._generation
                )
            except redis.RedisError as exc:
                log.warning("schedule_sync_failed", poller=self.name, reason=str(exc))
                await _wait_any(stop, None, MAX_SLEEP)
        return None

    async def _drop_websub(self) -> None:
        """Unsubscribe from the hubs of feeds no longer configured (or disabled)."""
        subscriber = self._context.websub
        if subscriber is None:
            return
        try:
            await subscriber.drop_unconfigured([f.url for f in self.config.feeds if f.enabled])
        except redis.RedisError as exc:
            log.warning("websub_drop_failed", poller=self.name, reason=str(exc))

    async def _loop(self, schedule: SharedSchedule, stop: asyncio.Event) -> None:
        concurrency = self.config.poller.concurrency
        synced = time.monotonic()
        while not stop.is_set():
            self._woken = False  # before claiming: a poll ending from now on wakes us
            if self._pending is not None:
                await self._adopt(schedule, stop)
                synced = time.monotonic()
            timeout = MAX_SLEEP
            free = concurrency - len(self._in_flight)
            # One claim per few freed slots, not per poll: a claim is a round trip.
            if free > 0 and (free * CLAIM_BATCH >= concurrency or not self._in_flight):
                try:
                    batch = await schedule.claim(free, lease=self.lease, owner=self.name)
                except redis.RedisError as exc:
                    log.warning("poller_claim_failed", poller=self.name, reason=str(exc))
                    batch = None
                if batch is not None:
                    for claim in batch.claims:
                        task = asyncio.create_task(self._poll_claimed(schedule, claim))
                        self._in_flight[task] = claim
                        task.add_done_callback(self._finished)
                    if batch.claims and len(batch.claims) == free:
                        continue  # more may be due: claim again when a slot frees
                    if batch.next_due is not None:
                        timeout = min(MAX_SLEEP, max(0.001, batch.next_due - batch.now))
            if time.monotonic() - synced > RESYNC_EVERY:
                # Now and then (and at once after Redis lost its data): the configured
                # feeds back into the schedule, newer configs' changes respected.
                synced = time.monotonic()
                await self._sync(schedule, stop)
            await self._sleep(timeout)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        # Wake the loop only when it would claim (see _loop), not at every poll's end.
        free = self.config.poller.concurrency - len(self._in_flight)
        if free * CLAIM_BATCH >= self.config.poller.concurrency or not self._in_flight:
            self._wake()

    def _wake(self) -> None:
        """Make the claim loop look again now (a poll ended, stop, a new config)."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`_wake` is called meanwhile."""
        if self._woken:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _poll_claimed(self, schedule: SharedSchedule, claim: Claim) -> None:
        feed = self._feed(claim)
        if feed is None:
            # Scheduled without a readable config (removed meanwhile, or written by a
            # newer wirewatch): look again after the longest interval, without fetching.
            log.warning("feed_config_unreadable", feed_id=claim.feed_id, poller=self.name)
            await schedule.complete(claim, self.config.poller.max_interval)
            return
        kept: list[bool] = []

        async def record(fields: Fields, health: str, next_in: float) -> HealthChange | None:
            done, change = await schedule.finish(claim, next_in, fields=fields, health=health)
            kept.append(done)
            return change

        await poll_feed(
            self._context, feed, deadline=self.deadline, state=claim.state, record=record
        )
        # Not recorded (Redis failed): the lease runs out and the feed is taken again.
        # A feed removed from the config meanwhile has no lease left to keep.
        if kept and not kept[-1] and self._configured(claim.feed_id):
            log.warning("feed_lease_lost", feed=feed.display_name, poller=self.name)

    def _configured(self, fid: str) -> bool:
        return any(feed_id(feed.url) == fid for feed in self.config.feeds if feed.enabled)

    def _feed(self, claim: Claim) -> FeedConfig | None:
        cached = self._feeds.get(claim.feed_id)
        if cached is not None and cached[0] == claim.config_json:
            return cached[1]
        try:
            feed = FeedConfig.model_validate_json(claim.config_json)
        except ValueError:
            return None
        self._feeds[claim.feed_id] = (claim.config_json, feed)
        return feed

    async def _cancel_in_flight(self, schedule: SharedSchedule) -> None:
        claims = dict(self._in_flight)
        for task in claims:
            task.cancel()
        await asyncio.gather(*claims, return_exceptions=True)
        for task, claim in claims.items():
            if task.cancelled():
                with contextlib.suppress(redis.RedisError, RuntimeError):
                    await schedule.release(claim)  # due now: another poller takes it
        self._in_flight.clear()

    async def _beat(self) -> None:
        value = json.dumps({"at": round(time.time(), 3), "in_flight": len(self._in_flight)})
        key = self._keys.poller_heartbeat(self.name)
        try:
            await self._context.client.set(key, value, ex=HEARTBEAT_TTL)
        except redis.RedisError as exc:
            log.warning("poller_heartbeat_failed", reason=str(exc))

    async def _heartbeat(self, stop: asyncio.Event, schedule: SharedSchedule) -> None:
        """Say this poller is alive; free the feeds of pollers that are not."""
        beaten = summarised = swept = time.monotonic()
        while not stop.is_set():
            await _wait_any(stop, None, MAX_SLEEP)
            if time.monotonic() - swept >= NOTICE_SWEEP_EVERY:
                swept = time.monotonic()
                await self.sweep_notices(time.time())
            if self._context.metrics.due():  # a quiet poller's counts still reach Redis
                await flush_metrics(self._context)
            if time.monotonic() - beaten >= HEARTBEAT_EVERY:
                beaten = time.monotonic()
                await self._beat()
            if time.monotonic() - summarised >= SUMMARY_EVERY:
                summarised = time.monotonic()
                self._summary()
            try:
                freed = await schedule.free_orphans()
            except redis.RedisError as exc:
                log.warning("poller_orphan_sweep_failed", reason=str(exc))
            else:
                if freed:
                    log.warning("feeds_of_dead_poller_freed", feeds=freed, poller=self.name)

    async def sweep_notices(self, now: float) -> int:
        """Announce the health changes some poll recorded but never announced (its poller
        died, or Redis failed, in between): see :func:`monitor.health.sweep_unannounced`."""
        feeds = [feed for feed in self.config.feeds if feed.enabled]
        try:
            return await asyncio.to_thread(
                sweep_unannounced,
                self._context.rq_client,
                self._keys,
                feeds,
                self.config.poller.notify_channel,
                now,
            )
        except redis.RedisError as exc:
            log.warning("feed_notice_sweep_failed", poller=self.name, reason=str(exc))
            return 0

    def _summary(self) -> None:
        """One info line with the polls since the last one (unchanged polls log at debug)."""
        stats = self._context.stats
        if stats.polls:
            log.info(
                "poller_summary",
                poller=self.name,
                polls=stats.polls,
                in_flight=len(self._in_flight),
                period_s=SUMMARY_EVERY,
                **stats.take(),
            )

    @property
    def _context(self) -> PollContext:
        if self._ctx is None:
            raise RuntimeError("Poller is not open: use 'async with Poller(...)' or open()")
        return self._ctx


def _parse_processes() -> int:
    """One parse process per core beyond the poller's own, within bounds."""
    return max(1, min(MAX_PARSE_PROCESSES, (os.cpu_count() or 2) - 1))


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` (or ``wake``) is set meanwhile."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
