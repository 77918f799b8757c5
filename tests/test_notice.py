"""Feed health notices, worker side: a notice job reaches the operator's channel once,
is retried, and ends as a dead letter that can be replayed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from receivers import SmtpSink, WebhookReceiver
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.config import Config
from monitor.config_loader import parse_config
from monitor.keys import Keys
from workers import resources
from workers.api import list_dead, replay
from workers.worker import run_worker

NOTICE = {
    "v": 1,
    "feed": "Wire A",
    "url": "https://a.test/rss",
    "state": "failing",
    "previous": "degraded",
    "reason": "HTTP 503 Service Unavailable",
    "at": 1_790_000_000.0,
}


def config_for(prefix: str, webhook: WebhookReceiver, smtp: SmtpSink, notify: str) -> Config:
    return parse_config(
        f"""
redis: {{prefix: "{prefix}"}}
poller: {{notify_channel: {notify}}}
delivery: {{retry: {{attempts: 2, first_delay: 0.01, jitter: 0}}}}
channels:
  ops: {{type: webhook, url: "{webhook.url}", secret: "{webhook.secret}"}}
  desk: {{type: email, to: ["ops@example.org"], from: "ww@example.org",
          smtp: {{host: 127.0.0.1, port: {smtp.port}}}}}
""",
        "notice.yaml",
        {},
    )


@pytest.fixture(autouse=True)
def _forget_resources() -> Iterator[None]:
    yield
    resources._current = None


def enqueue(client: redis.Redis, prefix: str) -> None:
    queue = Queue(Keys(prefix).alerts_queue, connection=client, serializer=JSONSerializer)
    queue.enqueue("workers.jobs.feed_notice", NOTICE)


def test_a_notice_reaches_the_webhook_once(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    config = config_for(prefix, webhook_receiver, smtp_sink, "ops")
    enqueue(redis_client, prefix)
    enqueue(redis_client, prefix)  # the same transition twice: sent once
    run_worker(config, redis_url, burst=True)
    [hook] = webhook_receiver.wait_for(1)
    assert hook.verified
    assert hook.json["type"] == "feed_notice"
    assert hook.json["state"] == "failing" and hook.json["reason"].startswith("HTTP 503")
    assert len(webhook_receiver.received) == 1


def test_a_notice_by_email(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    config = config_for(prefix, webhook_receiver, smtp_sink, "desk")
    enqueue(redis_client, prefix)
    run_worker(config, redis_url, burst=True)
    [mail] = smtp_sink.wait_for(1)
    assert mail.message["Subject"] == "[wirewatch] feed Wire A is failing"
    assert "HTTP 503" in mail.message.get_content()


def test_an_undeliverable_notice_is_a_dead_letter_and_replays(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    webhook_receiver.respond_with(503, 503)
    config = config_for(prefix, webhook_receiver, smtp_sink, "ops")
    enqueue(redis_client, prefix)
    run_worker(config, redis_url, burst=True)
    [letter] = list_dead(redis_client, Keys(prefix))
    assert letter.kind == "notice" and "gave up after 2 tries" in letter.reason
    assert replay(redis_client, config, letter.id).replayed == [letter.id]
    run_worker(config, redis_url, burst=True)
    assert [r.status for r in webhook_receiver.wait_for(3)] == [503, 503, 200]
