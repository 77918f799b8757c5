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
from procs import Procs, wait_until
from receivers import ReceivedWebhook, SmtpSink, WebhookReceiver
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.items import Item, batch_payload
from monitor.keys import Keys
from workers import digest as digests

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


def write_config(tmp_path: Path, prefix: str, channels: str, rules: str) -> Path:
    """``wirewatch.yaml`` with NER off, JSON logs, ``channels`` and ``rules`` (YAML lines)."""
    config = tmp_path / "wirewatch.yaml"
    config.write_text(
        f"""
redis: {{prefix: "{prefix}"}}
logging: {{format: json}}
workers: {{ner: {{enabled: false}}}}
channels:
{channels}
rules:
{rules}
"""
    )
    return config


def setup(tmp_path: Path, prefix: str, channels: str, rule_extra: str, routes: str) -> Path:
    rule = f"  - {{id: pact, query: '{RULE}', channels: [{routes}] {rule_extra}}}"
    return write_config(tmp_path, prefix, channels, rule)


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


def two_rules(tmp_path: Path, prefix: str, channel: str, night: str, day: str) -> None:
    """A config with one channel ``ops`` shared by the rules ``night`` and ``day``, which
    match the same stories (one alert each per story)."""
    rules = (
        f"  - {{id: night, query: '{RULE}', channels: [ops], {night}}}\n"
        f"  - {{id: day, query: 'accord', channels: [ops] {day}}}"
    )
    write_config(tmp_path, prefix, channel, rules)


def quiet_until(end: datetime) -> str:
    """Quiet hours (UTC) that began a few minutes ago and end at ``end``."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    return f'quiet_hours: {{start: "{start:%H:%M:%S}", end: "{end:%H:%M:%S}", tz: UTC}}'


def rules_of(hook: ReceivedWebhook) -> list[str]:
    """The rule of each alert a webhook carried (one, or a digest's)."""
    alerts = hook.json["alerts"] if hook.json.get("type") == "digest" else [hook.json]
    return sorted(alert["rule"]["id"] for alert in alerts)


def test_a_quiet_rule_is_not_sent_with_another_rules_earlier_digest(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    procs: Procs,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Quiet hours are per rule, the digest buffer per channel: the channel's 2-second
    digest carries the other rule's alerts, the quiet rule's wait for their window."""
    # The window must outlast the worker's start (see the test above).
    end = (datetime.now(UTC) + timedelta(seconds=16)).replace(microsecond=0)
    hook = f'  ops: {{type: webhook, url: "{webhook_receiver.url}", digest: 2s}}'
    two_rules(tmp_path, prefix, hook, quiet_until(end), "")
    procs.env["REDIS_URL"] = redis_url
    procs.start("work")
    enqueue(redis_client, prefix, [story(1), story(2)])
    [first] = webhook_receiver.wait_for(1, timeout=30)
    assert rules_of(first) == ["day", "day"]  # gathered for 2 s, not held until the end
    # Nothing more before the window ends: the quiet rule's alerts are still held.
    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds() - 0.5))
    assert len(webhook_receiver.received) == 1
    _, second = webhook_receiver.wait_for(2, timeout=30)
    assert datetime.now(UTC) >= end
    assert rules_of(second) == ["night", "night"]
    time.sleep(1)
    assert len(webhook_receiver.received) == 2
    listed = [json.loads(line) for line in procs.cli("alerts", "list", "--json").splitlines()]
    assert [alert["channels"] for alert in listed] == [{"ops": "delivered"}] * 4


def test_an_overflow_is_not_delayed_by_a_quiet_window_hours_away(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    procs: Procs,
    webhook_receiver: WebhookReceiver,
) -> None:
    """The quiet rule's flush is due in two hours; the other rule's overflow digest is due
    in 3 seconds and goes then, alone; the quiet alerts stay held for their window."""
    end = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    two_rules(tmp_path, prefix, ops(webhook_receiver), quiet_until(end), ", max: 1/3s")
    procs.env["REDIS_URL"] = redis_url
    procs.start("work")
    enqueue(redis_client, prefix, [story(1), story(2)])
    single, overflow = webhook_receiver.wait_for(2, timeout=30)
    assert single.json.get("type") != "digest" and rules_of(single) == ["day"]
    assert overflow.json["type"] == "digest" and rules_of(overflow) == ["day"]
    keys = Keys(prefix)
    held = redis_client.zrange(keys.digest("ops"), 0, -1, withscores=True)
    assert [score for _, score in held] == [end.timestamp()] * 2  # not before the window ends
    # The overflow's flush scheduled the quiet alerts' own, for when their window ends.
    flag = lambda: digests.scheduled(redis_client, keys, "ops") or 0.0  # noqa: E731
    wait_until(lambda: abs(flag() - end.timestamp()) < 5, 10, "the quiet alerts' flush")
    time.sleep(1)
    assert len(webhook_receiver.received) == 2
