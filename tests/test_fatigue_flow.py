"""Alert fatigue controls and digests through the real pipeline: a `wirewatch work`
process (tests/procs.py) (with rq's scheduler, which runs the digest flushes) against the session's
Redis, a real webhook receiver and a real SMTP server. The CLI reads the history.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from procs import Procs
from receivers import SmtpSink, WebhookReceiver
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.items import Item, batch_payload
from monitor.keys import Keys

RULE = "China AND Russia"


def story(n: int) -> Item:
    return Item(
        key=f"story-{n}",
        feed_url="https://wire.test/feed",
        feed_name="Test wire",
        url=f"https://wire.test/{n}",
        title=f"China and Russia sign accord number {n}",
        summary=f"Officials from China and Russia met for round {n} of the talks on trade.",
        guid=f"g{n}",
    )


def ops(receiver: WebhookReceiver) -> str:
    """The config line of a signed webhook channel ``ops`` pointing at ``receiver``."""
    return f'  ops: {{type: webhook, url: "{receiver.url}", secret: "{receiver.secret}"}}'


def setup(tmp_path: Path, prefix: str, channels: str, rule_extra: str, routes: str) -> Path:
    config = tmp_path / "wirewatch.yaml"
    config.write_text(
        f"""
redis: {{prefix: "{prefix}"}}
logging: {{format: json}}
workers: {{ner: {{enabled: false}}}}
channels:
{channels}
rules:
  - {{id: pact, query: '{RULE}', channels: [{routes}] {rule_extra}}}
"""
    )
    return config


def enqueue(client: redis.Redis, prefix: str, items: list[Item]) -> None:
    queue = Queue(Keys(prefix).items_queue, connection=client, serializer=JSONSerializer)
    queue.enqueue("workers.jobs.process_batch", batch_payload(items))


def test_a_digest_channel_sends_one_message_per_window(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    procs: Procs,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    channels = f"""  desk: {{type: email, to: ["desk@example.org"], from: "ww@example.org",
          smtp: {{host: 127.0.0.1, port: {smtp_sink.port}}}, digest: 2s}}
{ops(webhook_receiver)}"""
    setup(tmp_path, prefix, channels, "", "desk, ops")
    procs.env["REDIS_URL"] = redis_url
    procs.start("work")
    enqueue(redis_client, prefix, [story(1), story(2), story(3)])
    hooks = webhook_receiver.wait_for(3, timeout=30)  # the webhook has no digest: one each
    [mail] = smtp_sink.wait_for(1, timeout=30)  # the e-mail: one digest of three
    time.sleep(3)
    assert len(smtp_sink.messages) == 1
    assert len({hook.id for hook in hooks}) == 3
    assert mail.message["Subject"].startswith("[wirewatch] digest: 3 alerts")
    body = mail.message.get_body(("plain",)).get_content()
    for n in (1, 2, 3):
        assert f"accord number {n}" in body
    listed = [json.loads(line) for line in procs.cli("alerts", "list", "--json").splitlines()]
    assert len(listed) == 3
    assert all(alert["channels"] == {"desk": "delivered", "ops": "delivered"} for alert in listed)


def test_rate_limit_overflow_rolls_into_a_digest_and_severity_routes(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    procs: Procs,
    webhook_receiver: WebhookReceiver,
) -> None:
    channels = f"""{ops(webhook_receiver)}
  pager: {{type: log, min_severity: critical}}"""
    setup(tmp_path, prefix, channels, ", max: 1/3s, severity: warning", "ops, pager")
    procs.env["REDIS_URL"] = redis_url
    procs.start("work")
    enqueue(redis_client, prefix, [story(1), story(2), story(3)])
    first, digest = webhook_receiver.wait_for(2, timeout=30)
    time.sleep(1)
    assert len(webhook_receiver.received) == 2
    assert first.json["rule"]["id"] == "pact"  # the one alert within the rate
    assert digest.json["type"] == "digest" and digest.json["count"] == 2
    listed = [json.loads(line) for line in procs.cli("alerts", "list", "--json").splitlines()]
    assert {alert["channels"]["pager"] for alert in listed} == {"skipped"}  # warning < critical
    assert sorted(alert["channels"]["ops"] for alert in listed) == ["delivered"] * 3


def test_quiet_hours_hold_alerts_until_they_end_and_muted_stories_are_skipped(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    procs: Procs,
    webhook_receiver: WebhookReceiver,
) -> None:
    now = datetime.now(UTC)
    # The window must outlast the worker's start (config, rules, NER model: seconds on a
    # loaded machine), or the alerts would be sent at once instead of held.
    start, end = (now - timedelta(minutes=5)).time(), (now + timedelta(seconds=15)).time()
    quiet = f', quiet_hours: {{start: "{start:%H:%M:%S}", end: "{end:%H:%M:%S}", tz: UTC}}'
    channels = f"""{ops(webhook_receiver)}"""
    setup(tmp_path, prefix, channels, quiet, "ops")
    procs.env["REDIS_URL"] = redis_url
    procs.cli("stories", "mute", "story-2", "--for", "1h")
    procs.start("work")
    enqueue(redis_client, prefix, [story(1), story(2)])
    time.sleep(2)
    assert webhook_receiver.received == []  # quiet
    [digest] = webhook_receiver.wait_for(1, timeout=30)
    arrived = datetime.now(UTC)
    assert arrived >= now + timedelta(seconds=14)
    assert digest.json["type"] == "digest" and digest.json["count"] == 1  # story-2 is muted
    assert digest.json["alerts"][0]["item"]["key"] == "story-1"
    assert "unmuted story story-2" in procs.cli("stories", "unmute", "story-2")
