"""What the HTTP API app holds beyond :mod:`monitor.api_context`, and the readers it is given.

``monitor`` may not import ``workers`` internals, so the readers of alerts, dead letters
and stories (``workers.api``) are handed to the app as a :class:`Sources` by the
composition root (:mod:`monitor.cli_serve`). They are the very functions the CLI uses
(``wirewatch alerts list``, ``alerts dead``, ``stories``), synchronous over a
``redis.Redis``: handlers call them in a thread with the app's :data:`SYNC_REDIS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from aiohttp import web

from monitor.api_context import CONFIG
from monitor.api_security import Scrubber
from monitor.config import Config
from monitor.keys import Keys


class JsonRecord(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class AlertRecord(JsonRecord, Protocol):
    """An alert of the history (``workers.api.AlertSummary``)."""

    @property
    def rule(self) -> str: ...

    @property
    def story(self) -> str: ...

    @property
    def raised_at(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Sources:
    """The workers' readers; signatures as in ``workers.api``."""

    # (connection, keys, rule, limit) → newest alerts first
    alerts: Callable[[redis.Redis, Keys, str | None, int], Sequence[AlertRecord]]
    # (connection, keys) → every dead letter
    dead: Callable[[redis.Redis, Keys], Sequence[JsonRecord]]
    # (connection, keys, offset, limit) → a page of stories, newest first, and the total
    stories: Callable[[redis.Redis, Keys, int, int], tuple[Sequence[JsonRecord], int]]
    # (connection, keys, story id) → the story, or None when it is not kept any more
    story: Callable[[redis.Redis, Keys, str], JsonRecord | None]


SOURCES = web.AppKey("sources", Sources)
SYNC_REDIS = web.AppKey("sync_redis", redis.Redis)
SCRUB = web.AppKey("scrub", Scrubber)
STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set when the app shuts down: long-lived responses (the alert stream) end."""


def reload_api(app: web.Application, config: Config) -> None:
    """Serve ``config`` from now on (rules, feeds, channels), on the loop's thread.

    Its secrets join those the app masks; the old ones stay masked too. Settings of the
    listener itself (``api.*``: address, token) need a restart: the caller's config
    watcher keeps their old values.
    """
    app[SCRUB].learn(config)
    app[CONFIG].current = config
