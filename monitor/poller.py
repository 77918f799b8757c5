"""The poller: every enabled feed fetched at its interval, new items enqueued in batches.

Role: the thin asynchronous shell around the pipeline stages
fetch (:mod:`monitor.fetch`) → parse (:mod:`monitor.parse`, in a separate process) →
first-seen filter (:mod:`monitor.seen`) → enqueue (:mod:`monitor.enqueue`), with the
per-feed state in :mod:`monitor.feed_state` and the timing in :mod:`monitor.schedule`.

Inputs: the validated :class:`~monitor.config.Config` and a Redis URL.
Outputs: rq jobs on the items queue, feed state hashes, seen sets, a heartbeat key and
one log line per poll — ``feed_polled`` (info) or ``feed_poll_failed`` (warning).

Resources (all created in :meth:`Poller.open`, closed in :meth:`Poller.close`, also via
``async with``): one ``aiohttp.ClientSession`` (User-Agent from config, at most
``poller.concurrency`` connections), one ``redis.asyncio`` client for state, one sync
``redis.Redis`` for rq (rq 2.x is synchronous; it runs in a thread), and a one-process
parse pool ("forkserver") so feedparser never stalls the event loop.

Invariants:

- a poll never raises: every failure (network, HTTP, a malformed feed, Redis, a bug) is
  logged with its reason, counted in the feed's state and backed off; feeds are never
  disabled;
- order within a poll: enqueue new items → mark them seen → store validators and body
  digest. A crash anywhere re-enqueues at worst (the workers deduplicate), never loses;
- an unchanged feed (304, or the same body digest) is not parsed and enqueues nothing;
- :meth:`Poller.run` returns soon after ``stop`` is set: sleeping feeds stop at once,
  in-flight polls get ``grace`` seconds, then are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiohttp
import redis
import redis.asyncio as aioredis
import structlog

from monitor.config import Config, FeedConfig
from monitor.enqueue import enqueue_batches, items_queue
from monitor.feed_state import FeedState, body_digest, load_state, record_failure, record_success
from monitor.fetch import FetchLimits, FetchResult, fetch
from monitor.keys import Keys
from monitor.parse import FeedRef, ParsedFeed, parse_feed
from monitor.poll_errors import FeedParseError, FetchError, PollError
from monitor.schedule import next_delay
from monitor.seen import mark_seen, unseen

log = structlog.get_logger()

HEARTBEAT_EVERY = 15.0
HEARTBEAT_TTL = 60


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll of one feed did. ``unchanged``: 304 or the same body as last time."""

    feed_url: str
    ok: bool
    next_in_s: float
    duration_ms: int
    status: int | None = None
    items: int = 0
    new: int = 0
    skipped: int = 0
    jobs: tuple[str, ...] = ()
    unchanged: bool = False
    warning: str | None = None
    error: str | None = None
    failures: int = 0


class Poller:
    """Polls the enabled feeds of ``config``; see the module docstring."""

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
        self._limits = FetchLimits.from_settings(config.poller)
        self._base_dir: Path | None = config.source.parent if config.source else None
        self._session: aiohttp.ClientSession | None = None
        self._redis: aioredis.Redis | None = None
        self._rq_redis: redis.Redis | None = None
        self._executor: Executor | None = None
        self._slots = asyncio.Semaphore(config.poller.concurrency)

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
        return self._session is not None

    async def open(self) -> None:
        if self.is_open:
            return
        settings = self.config.poller
        self._redis = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        self._rq_redis = redis.Redis.from_url(self.redis_url)  # rq needs raw bytes
        self._executor = _parse_pool()
        # Fetch slots: aiohttp's timeouts include waiting for a pooled connection, so
        # with more feeds than connections the wait must happen before the clock starts.
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": settings.user_agent},
            connector=aiohttp.TCPConnector(limit=settings.concurrency),
        )

    async def close(self) -> None:
        """Release everything :meth:`open` created, in reverse order."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        rq_redis, self._rq_redis = self._rq_redis, None
        if rq_redis is not None:
            rq_redis.close()
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every enabled feed at its interval until ``stop`` is set."""
        opened_here = not self.is_open
        await self.open()
        feeds = [feed for feed in self.config.feeds if feed.enabled]
        tasks = [
            asyncio.create_task(self._feed_loop(feed, stop), name=f"poll {feed.url}")
            for feed in feeds
        ]
        tasks.append(asyncio.create_task(self._heartbeat(stop, len(feeds)), name="heartbeat"))
        log.info("poller_started", poller=self.name, feeds=len(feeds))
        try:
            await stop.wait()
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            if pending:
                log.warning("poller_grace_expired", cancelled=len(pending), grace_s=self.grace)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if opened_here:
                await self.close()
            log.info("poller_stopped", poller=self.name)

    async def _feed_loop(self, feed: FeedConfig, stop: asyncio.Event) -> None:
        await _wait(stop, await self._time_until_due(feed))
        while not stop.is_set():
            outcome = await self.poll_feed(feed)
            # The interval runs from the start of a poll, so a 1 s interval means about
            # one poll a second; a floor keeps a slow feed from being polled back to back.
            spent = outcome.duration_ms / 1000
            await _wait(stop, max(outcome.next_in_s - spent, outcome.next_in_s / 10))

    async def _time_until_due(self, feed: FeedConfig) -> float:
        """After a restart, keep the schedule the last run left (a backing-off feed stays
        backed off); never longer than the feed's interval, or the backoff cap if failing."""
        try:
            state = await load_state(self._client, self._keys.feed(feed.url))
        except redis.RedisError:
            return 0.0
        if state.next_poll is None:
            return 0.0
        cap = self.config.poller.max_backoff if state.failures else self.config.feed_interval(feed)
        return max(0.0, min(state.next_poll - time.time(), cap))

    async def _heartbeat(self, stop: asyncio.Event, feeds: int) -> None:
        key = self._keys.poller_heartbeat(self.name)
        while not stop.is_set():
            try:
                await self._client.set(key, f"{time.time():.0f} feeds={feeds}", ex=HEARTBEAT_TTL)
            except redis.RedisError as exc:
                log.warning("poller_heartbeat_failed", reason=str(exc))
            await _wait(stop, HEARTBEAT_EVERY)
        with contextlib.suppress(redis.RedisError):
            await self._client.delete(key)  # a stopped poller is not alive for 60 s more

    async def poll_feed(self, feed: FeedConfig) -> PollOutcome:
        """One poll of ``feed`` end to end. Never raises (except on cancellation)."""
        started = time.monotonic()
        _ = self._http  # misuse (a closed poller) is an error for the caller, not the feed
        with structlog.contextvars.bound_contextvars(feed=feed.display_name, feed_url=feed.url):
            state = FeedState()
            try:
                state = await load_state(self._client, self._keys.feed(feed.url))
                return await self._poll(feed, state, started)
            except PollError as exc:
                status = exc.status if isinstance(exc, FetchError) else None
                retry_after = exc.retry_after if isinstance(exc, FetchError) else None
                return await self._failed(feed, state, started, exc.reason, status, retry_after)
            except redis.RedisError as exc:
                return await self._failed(feed, state, started, f"Redis error: {exc}", None, None)
            except Exception as exc:
                # A bug must cost one poll of one feed, not the poller.
                log.exception("feed_poll_crashed", feed=feed.display_name, url=feed.url)
                reason = f"internal error: {type(exc).__name__}: {exc}"
                return await self._failed(feed, state, started, reason, None, None)

    async def _poll(self, feed: FeedConfig, state: FeedState, started: float) -> PollOutcome:
        now = time.time()
        async with self._slots:
            result = await fetch(
                self._http,
                feed.url,
                etag=state.etag,
                last_modified=state.last_modified,
                limits=self._limits,
                base_dir=self._base_dir,
            )
        parsed: ParsedFeed | None = None
        new_items: list[str] = []
        jobs: list[str] = []
        validators: tuple[str | None, str | None, str | None] | None = None
        if result.body is not None:
            digest = body_digest(result.body)
            validators = (result.etag, result.last_modified, digest)
            if digest != state.digest:
                parsed = await self._parse(feed, result)
                seen_key = self._keys.seen(feed.url)
                all_keys = [item.key for item in parsed.items]
                new_items = await unseen(self._client, seen_key, all_keys)
                fresh = set(new_items)
                jobs = await asyncio.to_thread(
                    enqueue_batches,
                    items_queue(self._rq_client, self._keys),
                    [item for item in parsed.items if item.key in fresh],
                    batch_size=self.config.poller.batch_size,
                    job_timeout=self.config.workers.job_timeout,
                )
                await mark_seen(
                    self._client,
                    seen_key,
                    all_keys,
                    now=now,
                    keep_seconds=self.config.poller.seen_days * 86400,
                )
        next_in = next_delay(
            self.config.feed_interval(feed),
            0,
            max_backoff=self.config.poller.max_backoff,
            retry_after=result.retry_after,
            rand=self._rand,
        )
        await record_success(
            self._client,
            self._keys.feed(feed.url),
            status=result.status,
            now=now,
            next_poll=now + next_in,
            validators=validators,
        )
        outcome = PollOutcome(
            feed_url=feed.url,
            ok=True,
            next_in_s=next_in,
            duration_ms=_ms_since(started),
            status=result.status,
            items=len(parsed.items) if parsed else 0,
            new=len(new_items),
            skipped=parsed.skipped if parsed else 0,
            jobs=tuple(jobs),
            unchanged=parsed is None,
            warning=parsed.warning if parsed else None,
        )
        log.info(
            "feed_polled",
            feed=feed.display_name,
            url=feed.url,
            status=outcome.status,
            items=outcome.items,
            new=outcome.new,
            skipped=outcome.skipped,
            unchanged=outcome.unchanged,
            warning=outcome.warning,
            duration_ms=outcome.duration_ms,
            next_in_s=round(next_in, 1),
        )
        return outcome

    async def _parse(self, feed: FeedConfig, result: FetchResult) -> ParsedFeed:
        assert result.body is not None
        call = functools.partial(
            parse_feed,
            result.body,
            feed=FeedRef.from_config(feed),
            content_type=result.content_type,
            base_url=result.url,
        )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, call)
        except BrokenProcessPool as exc:
            # The parse process died (out of memory on a hostile feed, a signal): start a
            # fresh one so the other feeds keep being parsed.
            broken, self._executor = self._executor, _parse_pool()
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            raise FeedParseError("the parse process died while parsing this feed") from exc

    async def _failed(
        self,
        feed: FeedConfig,
        state: FeedState,
        started: float,
        reason: str,
        status: int | None,
        retry_after: float | None,
    ) -> PollOutcome:
        failures = state.failures + 1
        next_in = next_delay(
            self.config.feed_interval(feed),
            failures,
            max_backoff=self.config.poller.max_backoff,
            retry_after=retry_after,
            rand=self._rand,
        )
        now = time.time()
        try:
            await record_failure(
                self._client,
                self._keys.feed(feed.url),
                failures=failures,
                reason=reason,
                status=status,
                now=now,
                next_poll=now + next_in,
            )
        except redis.RedisError as exc:
            reason = f"{reason} (and the failure could not be recorded: {exc})"
        log.warning(
            "feed_poll_failed",
            feed=feed.display_name,
            url=feed.url,
            reason=reason,
            status=status,
            failures=failures,
            next_in_s=round(next_in, 1),
        )
        return PollOutcome(
            feed_url=feed.url,
            ok=False,
            next_in_s=next_in,
            duration_ms=_ms_since(started),
            status=status,
            error=reason,
            failures=failures,
        )

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Poller is not open: use 'async with Poller(...)' or open()")
        return self._session

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("Poller is not open: use 'async with Poller(...)' or open()")
        return self._redis

    @property
    def _rq_client(self) -> redis.Redis:
        if self._rq_redis is None:
            raise RuntimeError("Poller is not open: use 'async with Poller(...)' or open()")
        return self._rq_redis


def _parse_pool() -> ProcessPoolExecutor:
    # "forkserver": children start from a clean single-threaded server, not a fork of a
    # process running an event loop and threads.
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_ignore_interrupts,
    )


def _ignore_interrupts() -> None:
    """A Ctrl-C reaches the whole process group; the poller, not its parser, decides."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
