"""The JSON API: feeds, rules and their hits, channels, stories, alerts, dead letters.

Every list is paged with ``?limit=N&offset=M`` (limit 1–500, default 50) and answers
``{"items": [...], "offset": M, "limit": N, "total": T, "next": "<url of the next page>"
| null}``. Offsets, not cursors: every list here is bounded (the history stream is capped
by ``delivery.history_max``, stories expire), and a page may shift by the alerts raised
between two requests, which a dashboard tolerates.

Data comes from the readers the CLI uses — :func:`monitor.health.read_statuses`
(``wirewatch status --json``) and the workers' readers in :class:`~monitor.api_state.Sources`
(``alerts list``, ``alerts dead``, ``stories``) — run in a thread. Every body passes
through the app's scrubber, and channels show their name and type only: webhook URLs
carry tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from monitor.api_context import CONFIG, KEYS
from monitor.api_state import SCRUB, SOURCES, SYNC_REDIS, AlertRecord
from monitor.config import RuleConfig
from monitor.health import read_statuses
from monitor.liveness import pollers_alive

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
HISTORY_ALL = 1_000_000  # "every alert the history still holds" for the readers' limit
_SECRET_PARAMS = ("key", "token", "secret", "password", "passwd", "sig", "auth")


def json_body(request: web.Request, data: Any, status: int = 200) -> web.Response:
    """A JSON response with every configured secret masked."""
    text = request.app[SCRUB](json.dumps(data, ensure_ascii=False))
    return web.Response(text=text, status=status, content_type="application/json")


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low} and {high}")
    return value


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _window(request: web.Request) -> tuple[int, int]:
    limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return _int(request, "offset", 0, 0, 10**9), limit


def page(request: web.Request, items: Sequence[Any], offset: int, limit: int, total: int) -> Any:
    """The paged envelope; ``next`` keeps the request's other parameters."""
    following = None
    if offset + limit < total:
        query = {**request.query, "offset": str(offset + limit), "limit": str(limit)}
        following = f"{request.path}?{urlencode(query)}"
    return {
        "items": list(items),
        "offset": offset,
        "limit": limit,
        "total": total,
        "next": following,
    }


def public_url(url: str) -> str:
    """A feed URL without a password or token-like query values (private feeds have them)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "**********@" + netloc.rpartition("@")[2]
    pairs = [
        (name, "**********" if any(s in name.lower() for s in _SECRET_PARAMS) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    query = urlencode(pairs, safe="*") if pairs else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


async def feeds(request: web.Request) -> web.Response:
    """Every feed's health, as ``wirewatch status --json`` prints it, and live pollers."""
    app = request.app
    offset, limit = _window(request)

    def read() -> tuple[list[Any], list[str]]:
        rows = read_statuses(app[SYNC_REDIS], app[KEYS], app[CONFIG].current.feeds)
        return rows, pollers_alive(app[SYNC_REDIS], app[KEYS])

    rows, pollers = await asyncio.to_thread(read)
    items = [row.to_json() | {"url": public_url(row.url)} for row in rows[offset : offset + limit]]
    return json_body(request, page(request, items, offset, limit, len(rows)) | {"pollers": pollers})


async def _history(request: web.Request, rule: str | None = None) -> Sequence[AlertRecord]:
    app = request.app
    return await asyncio.to_thread(
        app[SOURCES].alerts, app[SYNC_REDIS], app[KEYS], rule, HISTORY_ALL
    )


def _rule_json(rule: RuleConfig, hits: int, last_hit: float | None) -> dict[str, Any]:
    return {
        "id": rule.id,
        "description": rule.description,
        "query": rule.query,
        "enabled": rule.enabled,
        "severity": rule.severity,
        "channels": rule.channels,
        "max": None if rule.max_rate is None else str(rule.max_rate),
        "hits": hits,
        "last_hit": last_hit,
    }


async def rules(request: web.Request) -> web.Response:
    """The configured rules with their hits: alerts raised in the kept history."""
    offset, limit = _window(request)
    counts: dict[str, int] = {}
    last: dict[str, float] = {}
    for alert in await _history(request):
        counts[alert.rule] = counts.get(alert.rule, 0) + 1
        last[alert.rule] = max(last.get(alert.rule, 0.0), alert.raised_at)
    configured = request.app[CONFIG].current.rules
    items = [
        _rule_json(rule, counts.get(rule.id, 0), last.get(rule.id))
        for rule in configured[offset : offset + limit]
    ]
    return json_body(request, page(request, items, offset, limit, len(configured)))


def hit_series(
    alerts: Sequence[AlertRecord], rule_ids: Sequence[str], now: float, hours: int
) -> dict[str, Any]:
    """Alerts per rule in each of the last ``hours`` hours (oldest bucket first)."""
    end = (int(now // 3600) + 1) * 3600
    start = end - hours * 3600
    series = {rule: [0] * hours for rule in rule_ids}
    for alert in alerts:
        if start <= alert.raised_at < end:
            counts = series.setdefault(alert.rule, [0] * hours)
            counts[int((alert.raised_at - start) // 3600)] += 1
    return {"start": start, "bucket_s": 3600, "rules": series}


async def rule_hits(request: web.Request) -> web.Response:
    """Hits per rule over time, for the dashboard's chart (``?hours=``, 1–168, default 24)."""
    hours = _int(request, "hours", 24, 1, 168)
    rule_ids = [rule.id for rule in request.app[CONFIG].current.rules]
    series = hit_series(await _history(request), rule_ids, time.time(), hours)
    return json_body(request, series)


async def channels(request: web.Request) -> web.Response:
    """Channel names and types only: URLs, keys and passwords stay out."""
    items = [
        {
            "name": name,
            "type": channel.type,
            "min_severity": channel.min_severity,
            "digest": channel.digest,
        }
        for name, channel in sorted(request.app[CONFIG].current.channels.items())
    ]
    return json_body(request, {"items": items})


async def alerts(request: web.Request) -> web.Response:
    """The newest alerts first (``?rule=`` filters), status per channel."""
    offset, limit = _window(request)
    found = await _history(request, request.query.get("rule") or None)
    items = [alert.to_json() for alert in found[offset : offset + limit]]
    return json_body(request, page(request, items, offset, limit, len(found)))


async def dead(request: web.Request) -> web.Response:
    """Dead letters, with every attempt's error (as ``wirewatch alerts dead --json``)."""
    app = request.app
    offset, limit = _window(request)
    letters = await asyncio.to_thread(app[SOURCES].dead, app[SYNC_REDIS], app[KEYS])
    items = [letter.to_json() for letter in letters[offset : offset + limit]]
    return json_body(request, page(request, items, offset, limit, len(letters)))


async def stories(request: web.Request) -> web.Response:
    """The newest stories: first seen, first outlet, every outlet with its time, items."""
    app = request.app
    offset, limit = _window(request)
    found, total = await asyncio.to_thread(
        app[SOURCES].stories, app[SYNC_REDIS], app[KEYS], offset, limit
    )
    items = [record.to_json() for record in found]
    return json_body(request, page(request, items, offset, limit, total))


async def story(request: web.Request) -> web.Response:
    """One story (which outlets carried it, when) and the alerts raised on it."""
    app = request.app
    story_id = request.match_info["story_id"]
    record = await asyncio.to_thread(app[SOURCES].story, app[SYNC_REDIS], app[KEYS], story_id)
    if record is None:
        return json_body(request, {"error": f"no story {story_id!r} (expired?)"}, status=404)
    raised = [alert.to_json() for alert in await _history(request) if alert.story == story_id]
    return json_body(request, record.to_json() | {"alerts": raised})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/feeds", feeds)
    app.router.add_get("/api/rules", rules)
    app.router.add_get("/api/rules/hits", rule_hits)
    app.router.add_get("/api/channels", channels)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_get("/api/dead", dead)
    app.router.add_get("/api/stories", stories)
    app.router.add_get("/api/stories/{story_id}", story)
