"""One poll of one feed, end to end: fetch → parse → first-seen filter → enqueue → record.

Role: the per-feed half of the poller (:mod:`monitor.poller` decides *which* feeds to
poll and when; this module polls one). It calls the pure decisions in
:mod:`monitor.schedule` (next delay, learned interval) and :mod:`monitor.health`, and
records the outcome in the feed's state hash (:mod:`monitor.feed_state`).

Inputs: a :class:`PollContext` (the poller's open resources and settings), a
:class:`~monitor.config.FeedConfig` and, from a claim, the feed's state and a
:data:`Recorder` that records the outcome and reschedules the feed in one round trip.
Output: a :class:`PollOutcome`, one log line (``feed_polled`` — at debug for an
unchanged feed, counted in :class:`~monitor.poll_stats.PollStats` for the periodic
summary — or ``feed_poll_failed``), and on a health transition that is news
(:func:`monitor.health.is_notice`) a ``feed_health_changed`` line and, with
``poller.notify_channel`` set, a notice job. Metrics (polls by outcome, fetch time,
publication → fetch) go to the poller's :class:`~monitor.metrics.PeriodicBuffer`, written
to Redis by the first poll to end after :data:`~monitor.metrics.FLUSH_EVERY` seconds and
by :func:`flush_metrics` (the poller, at stop): no round trip of its own per poll.

A changed body goes through :mod:`monitor.feed_items`: scanned for its entries' ids,
only the new entries parsed when the scan can be trusted, new items enqueued.

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
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis
import redis.asyncio as aioredis
import structlog

from monitor import health as health_rules
from monitor import schedule
from monitor.config import Config, FeedConfig
from monitor.enqueue_loop import LoopEnqueuer
from monitor.feed_items import SeenStates, hand_over, parse_body, parse_changed
from monitor.feed_state import (
    FeedState,
    HealthChange,
    body_digest,
    changed_fields,
    encode_buckets,
    load_state,
    record_poll,
)
from monitor.fetch import FetchLimits, FetchResult, fetch
from monitor.host_limits import HostLimiter
from monitor.keys import Keys
from monitor.metrics import FETCH_SECONDS, POLLS, PUBLISH_TO_FETCH, PeriodicBuffer, status_class
from monitor.parse import ParsedFeed
from monitor.parse_pool import ParsePool
from monitor.poll_errors import FetchError, NotAFeed, PollError
from monitor.poll_stats import PollStats
from monitor.websub import Subscriber

log = structlog.get_logger()

Fields = Mapping[str, str | int | float | None]
# Records a poll's outcome (fields, health, next delay): returns the health change.
Recorder = Callable[[Fields, str, float], Awaitable[HealthChange | None]]


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
    enqueuer: LoopEnqueuer  # new items → rq jobs, on this loop (monitor.enqueue_loop)
    parser: ParsePool
    slots: asyncio.Semaphore
    hosts: HostLimiter
    limits: FetchLimits
    base_dir: Path | None
    rand: Callable[[], float]
    websub: Subscriber | None = None  # set when poller.websub.callback_url is
    stats: PollStats = field(default_factory=PollStats)
    metrics: PeriodicBuffer = field(default_factory=PeriodicBuffer)


async def flush_metrics(ctx: PollContext) -> None:
    """Write the poller's buffered metrics now (at stop, or from a periodic task).

    Never raises on a Redis error: the counts stay buffered for the next flush."""
    try:
        await ctx.metrics.flush(ctx.client, ctx.keys)
    except redis.RedisError as exc:
        log.warning("metrics_flush_failed", reason=str(exc))


async def poll_feed(
    ctx: PollContext,
    feed: FeedConfig,
    deadline: float | None = None,
    *,
    state: FeedState | None = None,
    record: Recorder | None = None,
) -> PollOutcome:
    """One poll of ``feed``, cut off after ``deadline`` seconds. Never raises.

    ``state``: the feed's state as claimed (else it is read here); ``record``: how the
    outcome is written (else :func:`~monitor.feed_state.record_poll`)."""
    outcome = await _poll_feed(ctx, feed, deadline, state, record)
    if ctx.metrics.due():  # at most once a second per poller, not once per poll
        await flush_metrics(ctx)
    return outcome


async def _poll_feed(
    ctx: PollContext,
    feed: FeedConfig,
    deadline: float | None,
    state: FeedState | None,
    record: Recorder | None,
) -> PollOutcome:
    started = time.monotonic()
    writer = record or functools.partial(_record, ctx, ctx.keys.feed(feed.url))
    stored: FeedState | None = state  # what the hash holds, when known

    async def record_changes(fields: Fields, health: str, next_in: float) -> HealthChange | None:
        if stored is not None:
            fields = changed_fields(stored, fields)
        return await writer(fields, health, next_in)

    record = record_changes
    loaded = state or FeedState()
    try:
        if state is None:
            loaded = stored = await load_state(ctx.client, ctx.keys.feed(feed.url))
        async with asyncio.timeout(deadline):
            return await _poll(ctx, feed, loaded, started, record)
    except PollError as exc:
        return await _failed(ctx, feed, loaded, started, exc.reason, exc, record)
    except TimeoutError:
        reason = f"poll took longer than {deadline:g}s (its lease) and was cut off"
        return await _failed(ctx, feed, loaded, started, reason, None, record)
    except redis.RedisError as exc:
        reason = f"Redis error: {exc}"
        return await _failed(ctx, feed, loaded, started, reason, None, record)
    except Exception as exc:
        # A bug must cost one poll of one feed, not the poller.
        log.exception("feed_poll_crashed", feed=feed.display_name, url=feed.url)
        reason = f"internal error: {type(exc).__name__}: {exc}"
        return await _failed(ctx, feed, loaded, started, reason, None, record)


@contextlib.contextmanager
def _log_context(feed: FeedConfig) -> Iterator[None]:
    """Every line logged below carries the feed. Bound only where lines at info may
    come (a changed body, a failure), not for a 304: at thousands of polls a second the
    binding costs more than the rest of the poll's bookkeeping (bind/reset, in turn, is
    cheaper than bound_contextvars, which copies the whole context)."""
    tokens = structlog.contextvars.bind_contextvars(feed=feed.display_name, feed_url=feed.url)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


async def _record(
    ctx: PollContext, key: str, fields: Fields, health: str, next_in: float
) -> HealthChange | None:
    """The recorder of a poll outside the schedule: the state only."""
    return await record_poll(ctx.client, key, fields, health=health)


async def _fetch(ctx: PollContext, url: str, state: FeedState) -> FetchResult:
    # aiohttp's timeouts include waiting for a pooled connection, so the wait for a slot
    # must happen before the clock starts; the host's slot first, so a feed waiting for
    # its busy host does not sit on a global slot another host's feed could use.
    async with ctx.hosts.slot(url), ctx.slots:
        started = time.monotonic()
        try:
            result = await fetch(
                ctx.session,
                url,
                etag=state.etag,
                last_modified=state.last_modified,
                limits=ctx.limits,
                base_dir=ctx.base_dir,
            )
        except Exception:
            ctx.metrics.observe(FETCH_SECONDS, time.monotonic() - started, "error")
            raise
        ctx.metrics.observe(FETCH_SECONDS, time.monotonic() - started, "ok")
        return result


async def _poll(
    ctx: PollContext, feed: FeedConfig, state: FeedState, started: float, record: Recorder
) -> PollOutcome:
    now = time.time()
    result = await _fetch(ctx, state.current_url or feed.url, state)
    if result.body is None:  # a 304: nothing to parse, and no line at info
        return await _polled(ctx, feed, state, started, record, result, now)
    with _log_context(feed):
        return await _polled(ctx, feed, state, started, record, result, now)


async def _polled(
    ctx: PollContext,
    feed: FeedConfig,
    state: FeedState,
    started: float,
    record: Recorder,
    result: FetchResult,
    now: float,
) -> PollOutcome:
    """The rest of a successful fetch: parse a changed body, hand its items over, record."""
    settings = ctx.config.poller
    parsed: ParsedFeed | None = None
    new_items: list[str] = []
    jobs: list[str] = []
    fields: dict[str, str | int | float | None] = {}
    ttl_s = state.ttl  # a 304 carries no body: the last <ttl> still holds
    discovered: str | None = None
    known: SeenStates | None = None
    digest = body_digest(result.body) if result.body is not None else None
    if digest is not None and digest != state.digest:
        try:
            parsed, known = await parse_changed(ctx, feed, result)
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
            parsed = await parse_body(ctx, feed, result)
    if result.body is not None:
        fields |= {
            "etag": result.etag,
            "last_modified": result.last_modified,
            "digest": body_digest(result.body) if discovered else digest,
        }
        if parsed is not None:
            new_items, jobs = await hand_over(ctx, feed, parsed, now, known=known)
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
        next_in = await ctx.websub.after_poll(
            feed.url, _websub_links(result, parsed), result.url, next_in
        )
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
    }
    buckets = health_rules.count_new(state.new_by_hour, now, counted)
    if buckets != state.new_by_hour:
        fields["new_by_hour"] = encode_buckets(buckets)
    if moved:
        fields["current_url"] = moved
    change = await record(fields, "healthy", next_in)
    outcome = PollOutcome(
        feed_url=feed.url,
        ok=True,
        next_in_s=next_in,
        duration_ms=_ms_since(started),
        status=result.status,
        items=len(parsed.keys) if parsed else 0,
        new=len(new_items),
        skipped=parsed.skipped if parsed else 0,
        jobs=tuple(jobs),
        unchanged=parsed is None,
        warning=parsed.warning if parsed else None,
        health="healthy",
        interval=cadence.interval,
        moved_to=moved,
    )
    stats = ctx.stats
    if parsed is None:
        stats.unchanged += 1
        ctx.metrics.inc(POLLS, "unchanged", status_class(result.status))
    else:
        stats.changed += 1
        stats.new_items += len(new_items)
        ctx.metrics.inc(POLLS, "changed", status_class(result.status))
        if counted:  # a feed's first poll finds its backlog, not news
            _observe_publication(ctx, parsed, new_items, now)
    # An unchanged feed is routine: counted for the periodic summary, logged at debug.
    (log.debug if parsed is None else log.info)(
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


async def _failed(
    ctx: PollContext,
    feed: FeedConfig,
    state: FeedState,
    started: float,
    reason: str,
    exc: PollError | None,
    record: Recorder,
) -> PollOutcome:
    with _log_context(feed):
        return await _record_failure(ctx, feed, state, started, reason, exc, record)


async def _record_failure(
    ctx: PollContext,
    feed: FeedConfig,
    state: FeedState,
    started: float,
    reason: str,
    exc: PollError | None,
    record: Recorder,
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
        change = await record(fields, health, next_in)
    except redis.RedisError as error:
        reason = f"{reason} (and the failure could not be recorded: {error})"
    ctx.stats.failed += 1
    ctx.metrics.inc(POLLS, "failed", status_class(status))
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


def _websub_links(
    result: FetchResult, parsed: ParsedFeed | None
) -> tuple[str | None, str | None] | None:
    """The hub and topic a parsed body advertises: HTTP ``Link`` headers first (as the
    WebSub spec says), then the feed's own links. ``None`` when nothing was parsed."""
    if parsed is None:
        return None
    if result.hub_url is not None:
        return result.hub_url, result.self_url or parsed.self_url
    return parsed.hub_url, parsed.self_url or result.self_url


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


def _observe_publication(
    ctx: PollContext, parsed: ParsedFeed, new_items: list[str], now: float
) -> None:
    """Publication → fetch of each new item that says when it was published."""
    new = set(new_items)
    for item in parsed.items:
        if item.key in new and item.published is not None:
            ctx.metrics.observe(PUBLISH_TO_FETCH, now - item.published.timestamp())


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
