"""Stories end to end through real rq workers: one alert per story, threaded follow-ups
(checked in a real SMTP sink and a real webhook receiver), updates, restart safety."""

from __future__ import annotations

import json
from dataclasses import replace

import redis
from receivers import SmtpSink, WebhookReceiver
from test_pipeline import FAST, enqueue
from test_stories import COPIES, copy

from monitor.config import Config
from monitor.config_loader import parse_config
from monitor.keys import Keys
from workers.worker import run_worker

QUERY = "Valletta AND harbour"


def config(prefix: str, webhook: WebhookReceiver, smtp: SmtpSink, follow_up: str) -> Config:
    text = f"""
redis: {{prefix: "{prefix}"}}
delivery: {{retry: {FAST}}}
workers: {{stories: {{threshold: 0.3}}}}
channels:
  ops: {{type: webhook, url: "{webhook.url}", secret: "{webhook.secret}", timeout: 2}}
  desk: {{type: email, to: ["desk@example.org"], from: "wirewatch@example.org",
          smtp: {{host: 127.0.0.1, port: {smtp.port}, timeout: 2}}}}
rules:
  - {{id: harbour, query: '{QUERY}', channels: [ops, desk], follow_up: {follow_up}}}
"""
    return parse_config(text, "test.yaml", {})


def test_copies_from_three_outlets_give_one_story_and_one_alert(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    settings = config(prefix, webhook_receiver, smtp_sink, "{}")
    for index in range(len(COPIES)):  # one batch per feed, as pollers send them
        enqueue(redis_client, settings, [copy(index)])
    run_worker(settings, redis_url, burst=True)
    [hook] = webhook_receiver.wait_for(1)
    assert len(smtp_sink.wait_for(1)) == 1
    keys = Keys(prefix)
    stories = {redis_client.get(keys.story_of(copy(i).key)) for i in range(len(COPIES))}
    assert len(stories) == 1
    story = (stories.pop() or b"").decode()
    assert hook.json["story"]["id"] == story and hook.json["kind"] == "new"
    assert redis_client.zcard(keys.story_outlets(story)) == 3
    record = json.loads(redis_client.get(keys.item(copy(2).key)) or b"{}")
    assert record["story"] == story
    assert redis_client.zcard(keys.items_recent()) == 3


def test_a_follow_up_when_the_story_reaches_three_outlets_is_threaded_once(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    settings = config(prefix, webhook_receiver, smtp_sink, "{outlets: 3}")
    enqueue(redis_client, settings, [copy(0)])
    run_worker(settings, redis_url, burst=True)
    [first_mail] = smtp_sink.wait_for(1)
    enqueue(redis_client, settings, [copy(1)])
    enqueue(redis_client, settings, [copy(2)])
    run_worker(settings, redis_url, burst=True)
    first, follow = webhook_receiver.wait_for(2)
    assert first.json["kind"] == "new" and follow.json["kind"] == "follow_up"
    assert follow.json["thread_id"] == first.id and follow.id != first.id
    assert follow.json["story"]["outlet_count"] == 3
    assert "3 outlets" in follow.json["reason"]
    _, mail = smtp_sink.wait_for(2)
    assert mail.message["In-Reply-To"] == first_mail.message["Message-ID"]
    assert mail.message["References"] == first_mail.message["Message-ID"]
    assert mail.message["Subject"] == "Re: " + first_mail.message["Subject"]
    # The second batch again (a crashed worker's job, say): nothing more is sent.
    enqueue(redis_client, settings, [copy(1), copy(2)])
    run_worker(settings, redis_url, burst=True)
    assert len(webhook_receiver.received) == 2 and len(smtp_sink.messages) == 2


def test_an_exact_copy_on_another_publishers_feed_counts_as_an_outlet(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    settings = config(prefix, webhook_receiver, smtp_sink, "{outlets: 2}")
    original = copy(0)
    syndicated = replace(
        original, key="https://other.example.net/rss#1", feed_url="https://other.example.net/rss"
    )
    enqueue(redis_client, settings, [original])
    enqueue(redis_client, settings, [syndicated])  # same URL: an exact duplicate
    run_worker(settings, redis_url, burst=True)
    first, follow = webhook_receiver.wait_for(2)
    assert follow.json["kind"] == "follow_up" and follow.json["thread_id"] == first.id
    assert [o[0] for o in follow.json["story"]["outlets"]] == ["example.com", "example.net"]


def test_a_material_update_alerts_and_a_cosmetic_edit_does_not(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    settings = config(prefix, webhook_receiver, smtp_sink, "{updates: true}")
    item = copy(0)
    enqueue(redis_client, settings, [item])
    run_worker(settings, redis_url, burst=True)
    [first] = webhook_receiver.wait_for(1)
    cosmetic = replace(item, title=item.title.upper() + ".")
    enqueue(redis_client, settings, [cosmetic])
    run_worker(settings, redis_url, burst=True)
    material = replace(cosmetic, summary=item.summary.replace("40 vessels", "55 vessels"))
    enqueue(redis_client, settings, [material])
    enqueue(redis_client, settings, [material])  # and once more: one update only
    run_worker(settings, redis_url, burst=True)
    _, update = webhook_receiver.wait_for(2)
    assert update.json["kind"] == "update" and update.json["thread_id"] == first.id
    assert update.json["reason"] == "numbers -40 +55"
    assert len(webhook_receiver.received) == 2
