"""The embedded Redis: a real server, persistent with AOF, stopped cleanly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from monitor.redis_server import RedisServer, RedisServerError, find_redis_server, running_url


def test_binary_is_found() -> None:
    assert Path(find_redis_server()).exists()


def test_data_survives_a_restart_with_aof(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "data") as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
    assert (tmp_path / "data").exists()
    with RedisServer(tmp_path / "data") as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()


def test_a_deep_data_folder_still_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    with RedisServer(deep) as server:
        assert len(str(server.socket)) <= 100
        assert redis.Redis.from_url(server.url).ping()


def test_one_server_per_data_folder(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "data"), pytest.raises(RedisServerError, match="in use"):
        RedisServer(tmp_path / "data").start()
    # Released on stop: the folder can be used again.
    with RedisServer(tmp_path / "data") as again:
        assert redis.Redis.from_url(again.url).ping()


def test_running_url_finds_a_live_server_only(tmp_path: Path) -> None:
    assert running_url(tmp_path / "data") == ""
    with RedisServer(tmp_path / "data") as server:
        assert running_url(tmp_path / "data") == server.url
    assert running_url(tmp_path / "data") == ""


def test_a_dead_server_is_restarted_from_its_aof(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "data") as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.execute_command("BGREWRITEAOF")  # make sure it is on disk before the kill
        time.sleep(1.0)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        time.sleep(0.2)
        assert not server.running
        assert server.restart_if_dead()
        assert server.running and not server.restart_if_dead()
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()
