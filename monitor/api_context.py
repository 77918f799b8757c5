"""What every HTTP API handler may read from the aiohttp application.

The app (``wirewatch serve``, and part of ``wirewatch run``) holds one async Redis
client, the key names and the running config (:class:`ServedConfig`, replaced on a
reload); handlers in separate modules (JSON API, metrics, dashboard) find them through
these typed keys.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from monitor.config import Config
from monitor.keys import Keys

REDIS = web.AppKey("redis", aioredis.Redis)
KEYS = web.AppKey("keys", Keys)


class ServedConfig:
    """The config the handlers read (``app[CONFIG].current``).

    A reload (:func:`monitor.api_state.reload_api`) replaces :attr:`current` whole, on the
    event loop's thread, so a request sees the old config or the new one, never a mix.
    """

    __slots__ = ("current",)

    def __init__(self, config: Config) -> None:
        self.current = config


CONFIG = web.AppKey("config", ServedConfig)
