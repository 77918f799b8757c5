"""One poll of one feed, end to end: fetch → parse → first-seen filter → enqueue → record.

Role: the per-feed half of the poller (:mod:`monitor.poller` decides *which* feeds to
poll and when; this module polls one). It calls the pure decisions in
:mod:`monitor.schedule` (next delay, learned interval) and :mod:`monitor.health`, and
records the outcome in the feed's state hash (:mod:`monitor.feed_state`).

Inputs: a :class:`PollContext` (the poller's open resources and settings) and a
:class:`~monitor.config.FeedConfig`. Output: a :class:`PollOutcome`, one log line
(``feed_polled`` or ``feed_poll_failed``), and on a health transition that is news
(:func:`monitor.health.is_notice`) a ``feed_health_changed`` line and, with
``poller.notify_channel`` set, a notice job.

Invariants:

- :func:`poll_feed` never raises (except on cancellation): network, HTTP, a malformed
  feed, Redis, a bug, a poll cut off at its ``deadline`` — each is a recorded, backed-off
  failure. No feed is ever disabled.
- Order within a poll: enqueue new items → mark them seen → record validators and body
  digest. A crash anywhere re-enqueues at worst (the workers deduplicate), never loses.
- An unchanged feed (304, or the same body digest) is not parsed and enqueues nothing.
- Item keys and all Redis keys use the *configured* URL; a 301 changes only the URL
  fetched (``current_url``), so ids stay stable when a publisher moves a feed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis
import redis.asyncio as aioredis
import structlog

from monitor import health as health_rules
from monitor import schedule
from monitor.config import Config, FeedConfig
from monitor.enqueue import enqueue_batches, items_queue
from monitor.feed_state import (
    FeedState,
    HealthChange,
    body_digest,
    encode_buckets,
    load_state,
    record_poll,
)
from monitor.fetch import FetchLimits, FetchResult, fetch
from monitor.host_limits import HostLimiter
from monitor.keys import Keys
from monitor.parse import FeedRef, ParsedFeed, parse_feed
from monitor.parse_pool import ParsePool
from monitor.poll_errors import FetchError, NotAFeed, PollError
from monitor.seen import mark_seen, unseen
from monitor.websub import Subscriber

log = structlog.get_logger()


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
    health: str = "healthy"
    interval: float = 0.0
    moved_to: str | None = None


@dataclass(frozen=True, slots=True)
class PollContext:
    """The open resources a poll uses, owned (opened and closed) by the poller."""

    config: Config
    keys: Keys
    name: str
    session: aiohttp.ClientSession
    client: aioredis.Redis
    rq_client: redis.Redis
    parser: ParsePool
    slots: asyncio.Semaphore
    hosts: HostLimiter
    limits: FetchLimits
    base_dir: Path | None
    rand: Callable[[], float]
    websub: Subscriber | None = None  # set when poller.websub.callback_url is


async def poll_feed(
    ctx: PollContext, feed: FeedConfig, deadline: float | None = None
) -> PollOutcome:
    """One poll of ``feed``, cut off after ``deadline`` seconds. Never raises."""
    started = time.monotonic()
    with structlog.contextvars.bound_contextvars(feed=feed.display_name, feed_url=feed.url):
        state = FeedState()
        try:
            state = await load_state(ctx.client, ctx.keys.feed(feed.url))
            async with asyncio.timeout(deadline):
                return await _poll(ctx, feed, state, started)
        except PollError as exc:
            return await _failed(ctx, feed, state, started, exc.reason, exc)
        except TimeoutError:
            reason = f"poll took longer than {deadline:g}s (its lease) and was cut off"
            return await _failed(ctx, feed, state, started, reason, None)
        except redis.RedisError as exc:
            return await _failed(ctx, feed, state, started, f"Redis error: {exc}", None)
        except Exception as exc:
            # A bug must cost one poll of one feed, not the poller.
            log.exception("feed_poll_crashed", feed=feed.display_name, url=feed.url)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return await _failed(ctx, feed, state, started, reason, None)


async def _fetch(ctx: PollContext, url: str, state: FeedState) -> FetchResult:
    # aiohttp's timeouts include waiting for a pooled connection, so the wait for a slot
    # must happen before the clock starts; the host's slot first, so a feed waiting for
    # its busy host does not sit on a global slot another host's feed could use.
    async with ctx.hosts.slot(url), ctx.slots:
        return await fetch(
            ctx.session,
            url,
            etag=state.etag,
            last_modified=state.last_modified,
            limits=ctx.limits,
            base_dir=ctx.base_dir,
        )


async def _poll(
    ctx: PollContext, feed: FeedConfig, state: FeedState, started: float
) -> PollOutcome:
    now = time.time()
    settings = ctx.config.poller
    result = await _fetch(ctx, state.current_url or feed.url, state)
    parsed: ParsedFeed | None = None
    new_items: list[str] = []
    jobs: list[str] = []
    fields: dict[str, str | int | float | None] = {}
    ttl_s = state.ttl  # a 304 carries no body: the last <ttl> still holds
    discovered: str | None = None
    if result.body is not None and body_digest(result.body) != state.digest:
        try:
            parsed = await _parse(ctx, feed, result)
        except NotAFeed as exc:
            # A web page, not a feed: follow the feed it advertises (one level only) and
            # poll that from now on; a page without one stays a failure with its reason.
            discovered = next((url for url in exc.feed_urls if url != result.url), None)
            if discovered is None:
                raise
            log.info("feed_discovered", page=result.url, feed_url=discovered)
            result = await _fetch(ctx, discovered, FeedState())  # the page's validators
            if result.body is None:
                raise FetchError(f"the discovered feed {discovered} sent no body") from exc
            parsed = await _parse(ctx, feed, result)
    if result.body is not None:
        fields |= {
            "etag": result.etag,
            "last_modified": result.last_modified,
            "digest": body_digest(result.body),
        }
        if parsed is not None:
            new_items, jobs = await _hand_over(ctx, feed, parsed, now)
            ttl_s = parsed.ttl_s
            fields["ttl"] = ttl_s  # a feed that drops its <ttl> drops the hint
    bounds, cadence = _cadence(ctx.config, feed, state)
    elapsed = now - state.last_success if state.last_success is not None else None
    cadence = schedule.learn(cadence, new_items=len(new_items), elapsed=elapsed, bounds=bounds)
    max_age = getattr(result, "cache_control_max_age", None)
    expires = getattr(result, "expires", None)
    next_in = schedule.success_delay(
        cadence.interval,
        hints=(ttl_s, max_age, expires - now if expires is not None else None),
        bounds=bounds,
        max_backoff=settings.max_backoff,
        retry_after=result.retry_after,
    )
    if ctx.websub is not None:  # subscribe to an advertised hub; poll slower while pushed to
        next_in = await ctx.websub.after_poll(feed.url, parsed, result.url, next_in)
    moved = discovered or _moved_to(result, state, feed)
    counted = len(new_items) if state.last_success is not None else 0  # not the backlog
    fields |= _cadence_fields(cadence, ctx.config.feed_interval(feed))
    fields |= {
        "failures": 0,
        "last_status": result.status,
        "last_success": now,
        "last_polled": now,
        "next_poll": now + next_in,
        "last_error": None,
        "new_by_hour": encode_buckets(health_rules.count_new(state.new_by_hour, now, counted)),
    }
    if moved:
        fields["current_url"] = moved
    change = await record_poll(ctx.client, ctx.keys.feed(feed.url), fields, health="healthy")
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
        health="healthy",
        interval=cadence.interval,
        moved_to=moved,
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
        poller=ctx.name,
        **({"moved_to": moved} if moved else {}),
    )
    await _announce(ctx, feed, state, change, "healthy", None, now)
    return outcome


async def _parse(ctx: PollContext, feed: FeedConfig, result: FetchResult) -> ParsedFeed:
    """feedparser in the parse process, never on the event loop."""
    assert result.body is not None
    return await ctx.parser.parse(
        functools.partial(
            parse_feed,
            result.body,
            feed=FeedRef.from_config(feed),
            content_type=result.content_type,
            base_url=result.url,
        )
    )


async def hand_over_body(
    ctx: PollContext, feed: FeedConfig, body: bytes, *, content_type: str | None, url: str
) -> tuple[ParsedFeed, list[str], list[str]]:
    """Parse a body pushed to us (WebSub) and hand its new items over exactly as a poll
    does; returns it parsed, the new item keys and the job ids. Raises FeedParseError."""
    result = FetchResult(status=200, body=body, url=url, content_type=content_type)
    parsed = await _parse(ctx, feed, result)
    new_items, jobs = await _hand_over(ctx, feed, parsed, time.time())
    return parsed, new_items, jobs


async def _hand_over(
    ctx: PollContext, feed: FeedConfig, parsed: ParsedFeed, now: float
) -> tuple[list[str], list[str]]:
    """Enqueue the unseen items, then mark every item of the body seen."""
    seen_key = ctx.keys.seen(feed.url)
    all_keys = [item.key for item in parsed.items]
    new_items = await unseen(ctx.client, seen_key, all_keys)
    fresh = set(new_items)
    jobs = await asyncio.to_thread(
        enqueue_batches,
        items_queue(ctx.rq_client, ctx.keys),
        [item for item in parsed.items if item.key in fresh],
        batch_size=ctx.config.poller.batch_size,
        job_timeout=ctx.config.workers.job_timeout,
    )
    await mark_seen(
        ctx.client,
        seen_key,
        all_keys,
        now=now,
        keep_seconds=ctx.config.poller.seen_days * 86400,
    )
    return new_items, jobs


async def _failed(
    ctx: PollContext,
    feed: FeedConfig,
    state: FeedState,
    started: float,
    reason: str,
    exc: PollError | None,
) -> PollOutcome:
    settings = ctx.config.poller
    status = exc.status if isinstance(exc, FetchError) else None
    retry_after = exc.retry_after if isinstance(exc, FetchError) else None
    failures = state.failures + 1
    health = health_rules.classify(
        failures,
        status=status,
        degraded_after=settings.degraded_after,
        failing_after=settings.failing_after,
    )
    bounds, cadence = _cadence(ctx.config, feed, state)
    if status == 429:
        cadence = schedule.slow_down(cadence, bounds)
    if health == "gone":
        next_in = max(settings.gone_interval, retry_after or 0.0)
    else:
        next_in = schedule.next_delay(
            cadence.interval,
            failures,
            max_backoff=settings.max_backoff,
            retry_after=retry_after,
            rand=ctx.rand,
        )
    moved = _moved_to(exc, state, feed)
    now = time.time()
    fields = _cadence_fields(cadence, ctx.config.feed_interval(feed)) | {
        "failures": failures,
        "last_error": reason,
        "last_error_at": now,
        "last_status": status,
        "last_polled": now,
        "next_poll": now + next_in,
    }
    if moved:
        fields["current_url"] = moved
    change: HealthChange | None = None
    try:
        change = await record_poll(ctx.client, ctx.keys.feed(feed.url), fields, health=health)
    except redis.RedisError as error:
        reason = f"{reason} (and the failure could not be recorded: {error})"
    log.warning(
        "feed_poll_failed",
        feed=feed.display_name,
        url=feed.url,
        reason=reason,
        status=status,
        failures=failures,
        health=health,
        next_in_s=round(next_in, 1),
        poller=ctx.name,
    )
    await _announce(ctx, feed, state, change, health, reason, now)
    return PollOutcome(
        feed_url=feed.url,
        ok=False,
        next_in_s=next_in,
        duration_ms=_ms_since(started),
        status=status,
        error=reason,
        failures=failures,
        health=health,
        interval=cadence.interval,
        moved_to=moved,
    )


def _cadence(
    config: Config, feed: FeedConfig, state: FeedState
) -> tuple[schedule.Bounds, schedule.Cadence]:
    """The feed's bounds and learned cadence; a changed configured interval restarts it."""
    start = config.feed_interval(feed)
    bounds = schedule.interval_bounds(
        start,
        feed_min=feed.min_interval,
        feed_max=feed.max_interval,
        global_min=config.poller.min_interval,
        global_max=config.poller.max_interval,
    )
    if (
        state.interval is None
        or state.events is None
        or state.exposure is None
        or state.start_interval != start
    ):
        return bounds, schedule.initial_cadence(start, bounds)
    return bounds, schedule.Cadence(bounds.clamp(state.interval), state.events, state.exposure)


def _cadence_fields(cadence: schedule.Cadence, start: float) -> dict[str, str | int | float | None]:
    return {
        "interval": cadence.interval,
        "events": cadence.events,
        "exposure": cadence.exposure,
        "start_interval": start,
    }


def _moved_to(source: object, state: FeedState, feed: FeedConfig) -> str | None:
    """The feed's new URL when a 301/308 moved it, if it differs from the one in use."""
    target = getattr(source, "permanent_redirect_to", None)
    if isinstance(target, str) and target and target != (state.current_url or feed.url):
        return target
    return None


async def _announce(
    ctx: PollContext,
    feed: FeedConfig,
    state: FeedState,
    change: HealthChange | None,
    health: str,
    reason: str | None,
    now: float,
) -> None:
    """One notice when the poll changed the feed's health (see :mod:`monitor.health`)."""
    url = state.current_url or feed.url
    await health_rules.announce(
        ctx.config, ctx.keys, ctx.rq_client, feed, url, change, health, reason, now
    )


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
