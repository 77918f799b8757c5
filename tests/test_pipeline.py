"""The worker side end to end, in-process: batch job → dedupe → entities → rules →
alerts → delivery jobs → a real webhook receiver and a real SMTP server.

rq runs for real (burst workers against the session's Redis); nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
import redis
from receivers import SmtpSink, WebhookReceiver
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.config import Config
from monitor.config_loader import parse_config
from monitor.items import Item, batch_payload
from monitor.keys import Keys
from workers import resources
from workers.api import list_alerts, list_dead, replay
from workers.worker import run_worker

ROOT = Path(__file__).resolve().parent.parent
# Retries at once (under a second is "now"), so burst workers see them; 4 tries in all.
FAST = "{attempts: 4, first_delay: 0.01, jitter: 0}"
RULE = 'China AND ("military aid" OR "military assistance" OR weapons) AND (Russia OR Moscow)'


def seed_items(feed_url: str = "https://seed.test/world.xml") -> list[Item]:
    parsed = feedparser.parse((ROOT / "seeds/feeds/world.xml").read_bytes())
    return [
        Item(
            key=f"{feed_url}#{entry.id}",
            feed_url=feed_url,
            feed_name="Seed wire",
            url=entry.link,
            title=entry.title,
            summary=entry.summary,
            guid=entry.id,
        )
        for entry in parsed.entries
    ]


def make_config(
    prefix: str, webhook: WebhookReceiver, smtp: SmtpSink, retries: str, *, fork: bool = False
) -> Config:
    text = f"""
redis: {{prefix: "{prefix}"}}
workers: {{fork: {str(fork).lower()}}}
delivery: {{retry: {retries}}}
channels:
  ops: {{type: webhook, url: "{webhook.url}", secret: "{webhook.secret}", timeout: 2}}
  desk: {{type: email, to: ["desk@example.org"], from: "wirewatch@example.org",
          smtp: {{host: 127.0.0.1, port: {smtp.port}, timeout: 2}}}}
  console: {{type: log}}
rules:
  - {{id: china-military-aid, query: '{RULE}', channels: [ops, desk, console]}}
"""
    return parse_config(text, "test.yaml", {})


def enqueue(connection: redis.Redis, config: Config, items: list[Item]) -> None:
    queue = Queue(
        Keys(config.redis.prefix).items_queue, connection=connection, serializer=JSONSerializer
    )
    queue.enqueue("workers.jobs.process_batch", batch_payload(items))


@pytest.mark.parametrize("fork", [False, True], ids=["in-process", "forked"])
def test_seed_batch_gives_one_webhook_and_one_email(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
    fork: bool,
) -> None:
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST, fork=fork)
    items = seed_items()
    enqueue(redis_client, config, items)
    run_worker(config, redis_url, burst=True)

    [hook] = webhook_receiver.wait_for(1)
    assert hook.verified
    body = hook.json
    assert body["rule"]["id"] == "china-military-aid"
    assert body["item"]["title"].startswith("Russia sought China military aid")
    names = {(e["text"], e["label"]) for e in body["entities"]}
    for expected in ["China", "Russia", "Ukraine", "Zhao Lijian", "Jake Sullivan"]:
        assert any(text == expected for text, _ in names), expected
    assert {m["term"].lower() for m in body["matched"]} >= {"china", "russia"}
    for term in body["matched"]:
        field_text = body["item"][term["field"]]
        assert field_text[term["start"] : term["end"]] == term["text"]

    [mail] = smtp_sink.wait_for(1)
    assert mail.message["Subject"] == ("[wirewatch] china-military-aid: " + body["item"]["title"])
    assert hook.id is not None and hook.id in mail.message["Message-ID"]

    # The same batch again (a poller restarted before marking items seen, say):
    # nothing new, no second alert.
    enqueue(redis_client, config, items)
    run_worker(config, redis_url, burst=True)
    assert len(webhook_receiver.received) == 1 and len(smtp_sink.messages) == 1


def test_the_same_story_from_another_feed_is_a_duplicate(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST)
    enqueue(redis_client, config, seed_items("https://a.test/feed"))
    enqueue(redis_client, config, seed_items("https://b.test/feed"))
    run_worker(config, redis_url, burst=True)
    assert len(webhook_receiver.wait_for(1)) == 1
    assert len(smtp_sink.wait_for(1)) == 1


def test_a_webhook_that_fails_is_retried_until_it_succeeds(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    webhook_receiver.respond_with(503, 500)  # then 200
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST)
    enqueue(redis_client, config, seed_items())
    run_worker(config, redis_url, burst=True)
    received = webhook_receiver.wait_for(3)
    assert [r.status for r in received] == [503, 500, 200]
    assert len({r.id for r in received}) == 1  # one alert id on every attempt
    delivered = Keys(prefix).delivered(received[0].id or "", "ops")
    assert redis_client.exists(delivered)


def test_a_404_is_not_retried_and_not_marked_delivered(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    webhook_receiver.respond_with(404, 404, 404)
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST)
    enqueue(redis_client, config, seed_items())
    run_worker(config, redis_url, burst=True)
    [only] = webhook_receiver.wait_for(1)
    assert only.status == 404
    assert not redis_client.exists(Keys(prefix).delivered(only.id or "", "ops"))
    assert len(smtp_sink.wait_for(1)) == 1  # the other channel is unaffected
    [letter] = list_dead(redis_client, Keys(prefix))
    assert letter.id == f"{only.id}:ops"
    assert "404" in letter.reason
    assert [a.status for a in letter.attempts] == [404]


def test_a_receiver_that_stays_down_ends_in_the_dead_letters_and_replays(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    webhook_receiver.respond_with(503, 503, 503, 503)  # four tries, all refused
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST)
    enqueue(redis_client, config, seed_items())
    run_worker(config, redis_url, burst=True)
    assert [r.status for r in webhook_receiver.wait_for(4)] == [503] * 4
    [letter] = list_dead(redis_client, Keys(prefix))
    assert "gave up after 4 tries" in letter.reason
    assert [a.attempt for a in letter.attempts] == [1, 2, 3, 4]
    # The receiver is back: the operator replays, the alert arrives, the letter is gone.
    assert replay(redis_client, config, None).replayed == [letter.id]
    run_worker(config, redis_url, burst=True)
    assert [r.status for r in webhook_receiver.wait_for(5)][-1] == 200
    assert list_dead(redis_client, Keys(prefix)) == []
    statuses = list_alerts(redis_client, Keys(prefix))[0].channels
    assert statuses == {"ops": "delivered", "desk": "delivered", "console": "delivered"}


def test_a_dead_letter_whose_alert_record_expired_is_kept_when_replayed(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    """Dead letters never expire; alert records do (workers.alert_days). Replaying a
    letter with nothing left to send keeps the letter and says why, instead of dropping
    it for a job that would find no record."""
    webhook_receiver.respond_with(404)  # permanent: a dead letter at once
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST)
    enqueue(redis_client, config, seed_items())
    run_worker(config, redis_url, burst=True)
    [letter] = list_dead(redis_client, Keys(prefix))
    redis_client.delete(Keys(prefix).alert(letter.target))  # its alert_days are over
    done = replay(redis_client, config, letter.id)
    assert done.replayed == [] and "expired" in done.kept[letter.id]
    assert [kept.id for kept in list_dead(redis_client, Keys(prefix))] == [letter.id]


def test_processed_items_are_kept_with_their_entities(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST)
    items = seed_items()
    enqueue(redis_client, config, items[:1])
    run_worker(config, redis_url, burst=True)
    raw = redis_client.get(Keys(prefix).item(items[0].key))
    assert raw is not None
    record = json.loads(raw)
    assert record["item"]["title"] == items[0].title
    assert any(e["text"] == "Zhao Lijian" for e in record["entities"])


@pytest.fixture(autouse=True)
def _forget_resources() -> Iterator[None]:
    """Each test loads its own config into the worker resources."""
    yield
    resources._current = None
