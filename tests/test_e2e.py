"""End to end: the real ``wirewatch run`` process, with its embedded Redis, polling a
local feed server and delivering to a local webhook receiver and SMTP server.

Asserts the product's promise on the design article: exactly one signed webhook and
one e-mail, carrying the entities and the reason; nothing for the other seed items;
nothing more on later polls, nor after the service restarts; a clean stop on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from feedserver import FeedServer
from receivers import Reply, SmtpSink, WebhookReceiver

from monitor.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SEED = (ROOT / "seeds/feeds/world.xml").read_bytes()
RULE = 'China AND ("military aid" OR "military assistance" OR weapons) AND (Russia OR Moscow)'
EXTRA = b"""<item>
  <title>Moscow asks Beijing for drones; China denies weapons deliveries to Russia</title>
  <link>https://seed.wirewatch.example/2022/03/15/drones</link>
  <guid isPermaLink="false">e2e-extra-item</guid>
  <description>A second, different story that the rule must also catch.</description>
</item>
</channel>"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    path: Path, feed_url: str, webhook: WebhookReceiver, smtp: SmtpSink, api_port: int = 0
) -> None:
    api = f"api: {{enabled: true, port: {api_port}}}" if api_port else ""
    path.write_text(f"""
redis: {{data_dir: data}}
{api}
poller: {{interval: 1}}
workers: {{processes: 1}}
logging: {{format: json}}
feeds:
  - {{url: "{feed_url}", name: "Local wire", interval: 1, max_interval: 1}}
channels:
  ops: {{type: webhook, url: "{webhook.url}", secret: "${{E2E_WEBHOOK_SECRET}}", timeout: 5}}
  desk: {{type: email, to: ["desk@example.org"], from: "wirewatch@example.org",
          smtp: {{host: 127.0.0.1, port: {smtp.port}, timeout: 5}}}}
  console: {{type: log}}
rules:
  - {{id: china-military-aid, query: '{RULE}', channels: [ops, desk, console]}}
""")


class Service:
    """One ``wirewatch run`` process, its output in a file."""

    def __init__(self, config: Path, secret: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WIREWATCH_CONFIG")}
        env["E2E_WEBHOOK_SECRET"] = secret
        self.log = log
        self._out = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 45) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._out.close()


def events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def _processed_again(log: Path, offset: int) -> bool:
    with log.open("rb") as handle:
        handle.seek(offset)
        later = handle.read().decode(errors="replace")
    return any(
        event.get("event") == "batch_processed" and event.get("items") == 15
        for event in (json.loads(line) for line in later.splitlines() if line.startswith("{"))
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def servers() -> Iterator[tuple[FeedServer, WebhookReceiver, SmtpSink]]:
    with FeedServer() as feeds, WebhookReceiver() as webhook, SmtpSink() as smtp:
        yield feeds, webhook, smtp


def test_service_alerts_once_per_story_across_polls_and_restarts(
    tmp_path: Path, servers: tuple[FeedServer, WebhookReceiver, SmtpSink]
) -> None:
    feeds, webhook, smtp = servers
    feed_url = feeds.set("/world.xml", SEED)
    config = tmp_path / "wirewatch.yaml"
    api = f"http://127.0.0.1:{free_port()}"
    write_config(config, feed_url, webhook, smtp, api_port=int(api.rsplit(":", 1)[1]))
    log = tmp_path / "service.log"

    service = Service(config, webhook.secret, log)
    try:
        [hook] = webhook.wait_for(1, timeout=60)
        [mail] = smtp.wait_for(1, timeout=30)
        # The API of 'wirewatch run' (api.enabled) shows the same alert.
        assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
        listed = httpx.get(f"{api}/api/alerts", timeout=5).json()["items"]
        assert hook.id in {alert["id"] for alert in listed}, listed
        polls_at_alert = feeds.hits("/world.xml")
        wait_until(lambda: feeds.hits("/world.xml") >= polls_at_alert + 3, 30, "three more polls")
    finally:
        assert service.stop() == 0, log.read_text()[-3000:]

    # The webhook: signed, and it says what matched and who is named.
    assert hook.verified
    body = hook.json
    assert body["rule"]["id"] == "china-military-aid"
    assert body["item"]["title"] == "Russia sought China military aid for Ukraine war, says US"
    assert body["item"]["url"].startswith("https://seed.wirewatch.example/")
    names = {entity["text"] for entity in body["entities"]}
    assert {"China", "Russia", "Ukraine", "Zhao Lijian", "Jake Sullivan"} <= names
    assert {"china", "russia"} <= {term["term"].lower() for term in body["matched"]}
    # The e-mail: the same alert.
    assert mail.message["Subject"] == f"[wirewatch] china-military-aid: {body['item']['title']}"
    assert hook.id is not None and hook.id in mail.message["Message-ID"]
    assert mail.message.get_body(("plain",)) is not None
    assert mail.message.get_body(("html",)) is not None
    # Nothing else matched, and the later polls added nothing.
    assert len(webhook.received) == 1 and len(smtp.messages) == 1

    first_run = events(log)
    kinds = {event["event"] for event in first_run}
    assert {"redis_embedded", "feed_polled", "batch_processed", "alert", "alert_delivered"} <= kinds
    polled = [e for e in first_run if e["event"] == "feed_polled"]
    assert all(e["feed"] == "Local wire" for e in polled)
    assert [e["new"] for e in polled][:1] == [15] and all(e["new"] == 0 for e in polled[1:])
    assert webhook.secret not in log.read_text()
    assert not (tmp_path / "data" / "redis.sock").exists()  # embedded Redis stopped
    assert any((tmp_path / "data").glob("appendonly*"))  # and it kept an AOF

    # Forget which items were seen and the feed's validators, so the restarted poller
    # enqueues the whole feed again: what must hold it back now is the dedupe and alert
    # state kept in the AOF.
    with RedisServer(tmp_path / "data") as redis_again:
        client = redis.Redis.from_url(redis_again.url)
        forgotten = [*client.scan_iter("wirewatch:seen:*"), *client.scan_iter("wirewatch:feed:*")]
        assert forgotten and client.delete(*forgotten) == len(forgotten)
        assert client.exists(f"wirewatch:alert:{hook.id}")
        client.close()

    # Restart: alerts and deliveries are remembered.
    log_size = log.stat().st_size
    service = Service(config, webhook.secret, log)
    try:
        polls_at_restart = feeds.hits("/world.xml")
        wait_until(lambda: feeds.hits("/world.xml") >= polls_at_restart + 3, 60, "polls")
        wait_until(lambda: _processed_again(log, log_size), 30, "the re-enqueued batch")
        assert len(webhook.received) == 1 and len(smtp.messages) == 1
        # A new story on the feed still gets through, once.
        feeds.set("/world.xml", SEED.replace(b"</channel>", EXTRA, 1))
        [_, second] = webhook.wait_for(2, timeout=30)
        smtp.wait_for(2, timeout=30)
        assert second.json["item"]["title"].startswith("Moscow asks Beijing for drones")
        polls = feeds.hits("/world.xml")
        wait_until(lambda: feeds.hits("/world.xml") >= polls + 2, 30, "two more polls")
    finally:
        assert service.stop() == 0, log.read_text()[-3000:]
    assert len(webhook.received) == 2 and len(smtp.messages) == 2
    second_run = [e for e in events(log) if e.get("timestamp")][len(first_run) :]
    assert log.stat().st_size > log_size
    assert {"service_stopped"} <= {e["event"] for e in second_run}


def test_a_second_signal_stops_everything_at_once(
    tmp_path: Path, servers: tuple[FeedServer, WebhookReceiver, SmtpSink]
) -> None:
    feeds, webhook, smtp = servers
    config = tmp_path / "wirewatch.yaml"
    write_config(config, feeds.set("/world.xml", SEED), webhook, smtp)
    log = tmp_path / "service.log"
    webhook.respond_with(Reply(delay=30))  # a delivery in flight: a warm stop would wait
    service = Service(config, webhook.secret, log)
    try:
        webhook.wait_for(1, timeout=60)
        started = {e["event"]: e for e in events(log)}
        pids = [started["redis_embedded"]["pid"], *started["service_started"]["worker_pids"]]
        family = [psutil.Process(pid) for pid in pids]
        family += [child for process in family for child in process.children(recursive=True)]
        service.process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(20) == 1
    finally:
        service.stop()
    assert "shutdown_forced" in log.read_text()
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, [p.pid for p in alive]
    # The data folder is free again: a new embedded Redis can take it at once.
    with RedisServer(tmp_path / "data"):
        pass
