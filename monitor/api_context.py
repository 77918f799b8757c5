"""What every HTTP API handler may read from the aiohttp application.

The app (``wirewatch serve``, and part of ``wirewatch run``) holds one async Redis
client, the key names and the config it was started with; handlers in separate modules
(JSON API, metrics, dashboard) find them through these typed keys.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from monitor.config import Config
from monitor.keys import Keys

REDIS = web.AppKey("redis", aioredis.Redis)
KEYS = web.AppKey("keys", Keys)
CONFIG = web.AppKey("config", Config)
