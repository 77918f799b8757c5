"""The HTTP API against the session's real Redis: health, readiness, the JSON API over
alerts raised by the real worker pipeline, paging, and the server-sent alert stream."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from apiserver import ApiThread
from receivers import free_port
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from test_pipeline import RULE, enqueue, seed_items

from monitor.config import Config
from monitor.config_loader import load_config
from monitor.keys import Keys
from workers.api import run_worker

FAST = "{attempts: 1, first_delay: 0.01, jitter: 0}"


def load_text(text: str, folder: Path) -> Config:
    """A config loaded from a file, as the service loads it (hot reload watches it)."""
    path = folder / f"wirewatch-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(text)
    return load_config(path, env={})


def api_config(prefix: str, folder: Path, extra: str = "", channels: str = "[console]") -> Config:
    text = f"""
redis: {{prefix: "{prefix}"}}
delivery: {{retry: {FAST}}}
feeds:
  - {{url: "https://seed.test/world.xml", name: "Seed wire"}}
  - {{url: "https://user:hunter2pass@private.test/feed?apikey=abc123xyz&x=1", name: "Private"}}
channels:
  console: {{type: log}}
  ops: {{type: webhook, url: "http://127.0.0.1:{free_port()}/hook/T0K3Nsecretpath", timeout: 1}}
rules:
  - {{id: china-military-aid, query: '{RULE}', channels: {channels}}}
  - {{id: quiet-rule, query: 'Atlantis', channels: [console]}}
{extra}
"""
    return load_text(text, folder)


@pytest.fixture
def config(prefix: str, tmp_path: Path) -> Config:
    return api_config(prefix, tmp_path)


@pytest.fixture
def api(config: Config, redis_url: str) -> Iterator[ApiThread]:
    with ApiThread(config, redis_url) as server:
        yield server


def raise_seed_alert(config: Config, redis_url: str, client: redis.Redis) -> None:
    """The seed batch through the real pipeline: dedupe, entities, stories, rules, alert."""
    enqueue(client, config, seed_items())
    run_worker(config, redis_url, burst=True)


def test_healthz_answers_while_the_process_is_up(api: ApiThread) -> None:
    response = httpx.get(f"{api.url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_names_every_reason_it_is_not_ready(api: ApiThread) -> None:
    response = httpx.get(f"{api.url}/readyz")
    assert response.status_code == 503
    reasons = response.json()["reasons"]
    assert any("no poller alive" in reason for reason in reasons)
    assert any("no rq worker" in reason for reason in reasons)


def test_readyz_is_ready_with_a_poller_and_a_worker_then_not_when_backed_up(
    redis_url: str, redis_client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    config = api_config(prefix, tmp_path, extra="api: {max_queue_length: 2, max_queue_age: 60}")
    keys = Keys(prefix)
    redis_client.set(keys.poller_heartbeat("p1"), json.dumps({"at": time.time()}), ex=10)
    queue = Queue(keys.items_queue, connection=redis_client, serializer=JSONSerializer)
    worker = Worker([queue], connection=redis_client, serializer=JSONSerializer)
    worker.register_birth()  # rq's own registry entry and heartbeat, as a live worker has
    try:
        with ApiThread(config, redis_url) as api:
            ready = httpx.get(f"{api.url}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["pollers"] == ["p1"] and ready.json()["workers"] == [worker.name]

            for _ in range(3):
                queue.enqueue("workers.jobs.process_batch", {"v": 1, "items": []})
            [job_id, *_] = queue.get_job_ids()
            old = datetime.now(UTC) - timedelta(seconds=120)
            redis_client.hset(
                f"rq:job:{job_id}", "enqueued_at", old.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            )
            backed = httpx.get(f"{api.url}/readyz")
            assert backed.status_code == 503
            reasons = " | ".join(backed.json()["reasons"])
            assert "3 jobs waiting" in reasons and "oldest job waiting 12" in reasons
    finally:
        worker.register_death()
        queue.empty()


def test_readyz_says_when_redis_answers_but_refuses_writes(
    api: ApiThread, redis_client: redis.Redis
) -> None:
    """maxmemory reached under noeviction: pings work, every write fails; the workers and
    pollers cannot work, so the deployment is not ready (it said ready)."""
    before = redis_client.config_get("maxmemory")["maxmemory"]
    policy = redis_client.config_get("maxmemory-policy")["maxmemory-policy"]
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", 1)
    try:
        response = httpx.get(f"{api.url}/readyz")
    finally:
        redis_client.config_set("maxmemory", before)
        redis_client.config_set("maxmemory-policy", policy)
    assert response.status_code == 503
    assert response.json()["reasons"][0].startswith("redis refuses writes: ")
    assert "maxmemory" in response.json()["reasons"][0]


def test_the_json_api_answers_503_with_the_reason_when_redis_is_unreachable(
    config: Config,
) -> None:
    with ApiThread(config, f"redis://127.0.0.1:{free_port()}/0") as api:
        response = httpx.get(f"{api.url}/api/feeds", timeout=15)
    assert response.status_code == 503
    assert response.json()["error"].startswith("redis unavailable: ConnectionError")


def test_readyz_says_when_redis_is_unreachable(config: Config) -> None:
    with ApiThread(config, f"redis://127.0.0.1:{free_port()}/0") as api:
        response = httpx.get(f"{api.url}/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json()["reasons"][0].startswith("redis unreachable")


def test_json_api_over_a_real_alert(
    api: ApiThread, config: Config, redis_url: str, redis_client: redis.Redis
) -> None:
    raise_seed_alert(config, redis_url, redis_client)
    [alert] = httpx.get(f"{api.url}/api/alerts").json()["items"]
    assert alert["rule"] == "china-military-aid"
    assert alert["title"].startswith("Russia sought China military aid")

    rules = {rule["id"]: rule for rule in httpx.get(f"{api.url}/api/rules").json()["items"]}
    assert rules["china-military-aid"]["hits"] == 1 and rules["quiet-rule"]["hits"] == 0
    assert rules["china-military-aid"]["channels"] == ["console"]
    series = httpx.get(f"{api.url}/api/rules/hits?hours=6").json()
    assert series["bucket_s"] == 3600 and len(series["rules"]["quiet-rule"]) == 6
    assert series["rules"]["china-military-aid"][-1] == 1

    stories = httpx.get(f"{api.url}/api/stories?limit=100").json()
    assert stories["total"] >= 1 and alert["story"] in {s["id"] for s in stories["items"]}
    story = httpx.get(f"{api.url}/api/stories/{alert['story']}").json()
    assert story["first_outlet"] and story["outlets"][0][0] == story["first_outlet"]
    assert [a["id"] for a in story["alerts"]] == [alert["id"]]
    assert httpx.get(f"{api.url}/api/stories/nope").status_code == 404

    feeds = httpx.get(f"{api.url}/api/feeds").json()
    assert [feed["feed"] for feed in feeds["items"]] == ["Seed wire", "Private"]
    assert feeds["items"][0]["state"] == "unknown" and feeds["pollers"] == []


def test_lists_are_paged_with_a_next_link(
    api: ApiThread, config: Config, redis_url: str, redis_client: redis.Redis
) -> None:
    enqueue(redis_client, config, seed_items())
    run_worker(config, redis_url, burst=True)
    first = httpx.get(f"{api.url}/api/stories?limit=1").json()
    assert first["total"] >= 2 and len(first["items"]) == 1
    second = httpx.get(f"{api.url}{first['next']}").json()
    assert second["offset"] == 1 and second["items"][0]["id"] != first["items"][0]["id"]
    last = httpx.get(f"{api.url}/api/stories?limit=1&offset={first['total'] - 1}").json()
    assert last["next"] is None
    assert httpx.get(f"{api.url}/api/feeds?limit=1").json()["next"] == "/api/feeds?limit=1&offset=1"
    for bad in ("limit=0", "limit=501", "offset=-1", "limit=x"):
        response = httpx.get(f"{api.url}/api/alerts?{bad}")
        assert response.status_code == 400 and "error" in response.json()


def test_dead_letters_are_listed_without_the_channel_url(
    prefix: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    config = api_config(prefix, tmp_path, channels="[ops]")
    raise_seed_alert(config, redis_url, redis_client)
    with ApiThread(config, redis_url) as api:
        response = httpx.get(f"{api.url}/api/dead")
    [letter] = response.json()["items"]
    assert letter["channel"] == "ops" and letter["kind"] == "alert" and letter["attempts"]
    assert "T0K3Nsecretpath" not in response.text


def _read_events(
    url: str, count: int, events: list[dict[str, str]], headers: dict[str, str]
) -> None:
    with httpx.stream("GET", url, headers=headers, timeout=20) as response:
        block: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                name, _, value = line.partition(":")
                block[name] = value.strip()
            elif not line and "data" in block:
                events.append(block)
                block = {}
                if len(events) >= count:
                    return


def test_alert_stream_sends_new_history_entries_and_resumes_after_last_event_id(
    api: ApiThread, config: Config, redis_url: str, redis_client: redis.Redis
) -> None:
    events: list[dict[str, str]] = []
    reader = threading.Thread(
        target=_read_events, args=(f"{api.url}/api/alerts/stream", 1, events, {})
    )
    reader.start()
    time.sleep(0.5)  # connected: only entries from now on
    raise_seed_alert(config, redis_url, redis_client)
    reader.join(timeout=30)
    [raised] = events
    assert raised["event"] == "raised"
    data = json.loads(raised["data"])
    assert data["rule"] == "china-military-aid" and data["stream_id"] == raised["id"]

    # A reconnecting browser sends Last-Event-ID and gets what it missed.
    history = redis_client.xrange(Keys(config.redis.prefix).alert_history())
    assert len(history) >= 2  # raised, then the console channel's "delivered"
    again: list[dict[str, str]] = []
    _read_events(f"{api.url}/api/alerts/stream", 1, again, {"Last-Event-ID": raised["id"]})
    assert again[0]["id"] == history[1][0].decode() and again[0]["event"] == "delivered"


def test_shutdown_ends_open_streams_promptly(config: Config, redis_url: str) -> None:
    api = ApiThread(config, redis_url).start()
    client = httpx.Client(timeout=10)
    stream = client.stream("GET", f"{api.url}/api/alerts/stream")
    response = stream.__enter__()
    assert response.headers["content-type"].startswith("text/event-stream")
    started = time.monotonic()
    api.stop()
    assert time.monotonic() - started < 4
    stream.__exit__(None, None, None)
    client.close()
