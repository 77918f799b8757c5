"""A changed body's way to the workers: parse (only what is new) → enqueue → mark seen.

Role: the half of a poll (:mod:`monitor.feed_poll`) that runs when a body changed, and
the whole of a WebSub push (:func:`hand_over_body`). A body is scanned for its entries'
ids first (:mod:`monitor.entry_scan`); when the scan can be trusted, only the entries
the first-seen filter does not know — or whose bytes changed since they were seen — are
parsed (:mod:`monitor.parse_partial`, in the parse process), else the whole body is
(:func:`monitor.parse.parse_feed`). A seen item whose title or summary changed is
enqueued again with its key (``item_updated`` in the log); the workers decide whether
the edit is material (:mod:`monitor.seen` keeps the revisions).

Invariant (what makes "nothing is lost" hold): new items are enqueued *before* every
item key of the body is marked seen (:mod:`monitor.seen`); a crash in between re-enqueues
at worst, and the workers deduplicate.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from monitor.config import FeedConfig
from monitor.entry_scan import scan_entries
from monitor.fetch import FetchResult
from monitor.normalise import item_key
from monitor.parse import FeedRef, ParsedFeed, parse_feed
from monitor.parse_partial import parse_partial
from monitor.seen import Revision, entry_revision, mark_seen, seen_state, text_revision

if TYPE_CHECKING:  # feed_poll imports this module
    from monitor.feed_poll import PollContext

log = structlog.get_logger()


# What the first-seen filter said about item keys: (seen?, stored revision) per key.
SeenStates = Mapping[str, tuple[bool, Revision | None]]


async def parse_changed(
    ctx: PollContext, feed: FeedConfig, result: FetchResult
) -> tuple[ParsedFeed, SeenStates]:
    """Parse only the entries that are new or whose bytes changed, when a scan of the
    body can be trusted (see the module docstring); else the whole body. Also returns
    what the first-seen filter said about the body's keys, for :func:`hand_over` (which
    then needs no read of its own; the feed's lease keeps other polls of it away)."""
    assert result.body is not None
    scan = scan_entries(result.body)
    if scan is None:
        return await parse_body(ctx, feed, result), {}
    keys = tuple(item_key(feed.url, guid, None, None) for guid in scan.ids)
    entries = tuple(entry_revision(raw) for raw in scan.raw_entries(result.body))
    seen, stored = await seen_state(
        ctx.client, ctx.keys.seen(feed.url), ctx.keys.seen_revisions(feed.url), keys
    )
    known = dict(zip(keys, zip(seen, stored, strict=True), strict=True))
    wanted = tuple(
        index
        for index, (was_seen, old) in enumerate(zip(seen, stored, strict=True))
        if not was_seen or old is None or old.entry != entries[index]
    )
    revisions = tuple(zip(keys, entries, strict=True))
    if len(wanted) == len(keys):  # all new (a first poll): no cut to make
        whole = await parse_body(ctx, feed, result)
        return dataclasses.replace(whole, entry_revisions=revisions), known
    try:
        cut = scan.cut(result.body, wanted)
    except ValueError:  # a JSON Feed that json.loads read once but not twice: never
        return await parse_body(ctx, feed, result), known
    parsed = await ctx.parser.parse(
        functools.partial(
            parse_partial,
            cut,  # a few KB instead of the whole body through the pipe
            expected=frozenset(keys[index] for index in wanted),
            body_keys=keys,
            feed=FeedRef.from_config(feed),
            content_type=result.content_type,
            base_url=result.url,
        )
    )
    if parsed is None:
        log.debug("feed_scan_untrusted", url=feed.url)  # the scan proved wrong: parse all
        return await parse_body(ctx, feed, result), known
    ctx.stats.parsed_partial += 1
    return dataclasses.replace(parsed, entry_revisions=revisions), known


async def parse_body(ctx: PollContext, feed: FeedConfig, result: FetchResult) -> ParsedFeed:
    """feedparser in the parse process, never on the event loop."""
    assert result.body is not None
    ctx.stats.parsed_whole += 1
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
    parsed = await parse_body(ctx, feed, result)
    new_items, jobs = await hand_over(ctx, feed, parsed, time.time())
    return parsed, new_items, jobs


async def hand_over(
    ctx: PollContext,
    feed: FeedConfig,
    parsed: ParsedFeed,
    now: float,
    *,
    known: SeenStates | None = None,
) -> tuple[list[str], list[str]]:
    """Enqueue the unseen and the edited items, then mark every item of the body seen;
    returns the new item keys (edited ones are logged, not counted as new) and job ids.
    ``known``: the first-seen filter's answer for these keys, when already read."""
    seen_key, revisions_key = ctx.keys.seen(feed.url), ctx.keys.seen_revisions(feed.url)
    item_keys = [item.key for item in parsed.items]
    if known is not None and all(key in known for key in item_keys):
        seen = [known[key][0] for key in item_keys]
        stored = [known[key][1] for key in item_keys]
    else:
        seen, stored = await seen_state(ctx.client, seen_key, revisions_key, item_keys)
    entries = dict(parsed.entry_revisions)
    revisions: dict[str, Revision] = {key: Revision(entry) for key, entry in entries.items()}
    fresh, edited = [], []
    for item, was_seen, old in zip(parsed.items, seen, stored, strict=True):
        text = text_revision(item.title, item.summary)
        revisions[item.key] = Revision(entries.get(item.key, old.entry if old else ""), text)
        if not was_seen:
            fresh.append(item)
        elif old is not None and old.text and old.text != text:
            edited.append(item)
            log.info("item_updated", feed=feed.display_name, item=item.key, title=item.title)
    jobs = await ctx.enqueuer.enqueue(
        fresh + edited,
        batch_size=ctx.config.poller.batch_size,
        job_timeout=ctx.config.workers.job_timeout,
    )
    await mark_seen(
        ctx.client,
        seen_key,
        list(parsed.keys),
        now=now,
        keep_seconds=ctx.config.poller.seen_days * 86400,
        revisions_key=revisions_key,
        revisions=revisions,
    )
    return [item.key for item in fresh], jobs
