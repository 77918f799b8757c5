"""Webhook delivery against a real local receiver that verifies with ``standardwebhooks``.

Covers: the signature verifies with an independent implementation and fails for a
tampered body; during a key rotation one signature per key, so receivers on the old and
on the new key both verify; unsigned when there is no secret; custom headers sent but unable to
replace protocol headers; the body carries rule, item, entities and matched terms;
2xx is success; 500/503/429 are transient (with Retry-After), 404/400/3xx permanent;
refused connections and timeouts are transient; ``deliver`` relabels errors with the
channel name. Also the pure Retry-After parser and rendering of the body.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr
from receivers import Reply, WebhookReceiver, free_port, new_secret, webhook_receiver
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from monitor.config import WebhookChannel
from monitor.config_loader import ConfigError, parse_config
from monitor.items import Item
from workers.delivery import DeliveryError, deliver, send_webhook, webhook_body
from workers.delivery.webhook import USER_AGENT, parse_retry_after
from workers.model import Alert, Entity, MatchedTerm

__all__ = ["webhook_receiver"]  # the fixture, imported for pytest


def make_alert(title: str = "Acme recalls widgets in France") -> Alert:
    item = Item(
        key="k1",
        feed_url="https://news.example/feed.xml",
        feed_name="Example News",
        url="https://news.example/acme-recall",
        title=title,
        summary="Acme Corp said on Monday it would recall 10,000 widgets.",
        published=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    )
    return Alert(
        id="a1b2c3d4",
        rule_id="acme-recalls",
        query="acme AND recall*",
        item=item,
        entities=(Entity("Acme", "ORG", 0, 4), Entity("France", "GPE", 24, 30)),
        matched=(
            MatchedTerm("acme", "title", 0, 4, "Acme"),
            MatchedTerm("recall*", "title", 5, 12, "recalls"),
        ),
        created=datetime(2024, 5, 6, 7, 9, 0, tzinfo=UTC),
    )


def channel_for(
    receiver: WebhookReceiver, *, signed: bool = True, **extra: object
) -> WebhookChannel:
    data: dict[str, object] = {"type": "webhook", "url": receiver.url, "timeout": 2}
    if signed:
        data["secret"] = receiver.secret
    data.update(extra)
    return WebhookChannel.model_validate(data)


def test_signed_delivery_verifies_with_standardwebhooks(webhook_receiver: WebhookReceiver) -> None:
    alert = make_alert()
    send_webhook(alert, channel_for(webhook_receiver))
    [got] = webhook_receiver.wait_for(1)
    assert got.verified
    assert got.id == alert.id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.body == webhook_body(alert)
    assert got.json == alert.to_json()
    assert Alert.from_json(got.json).to_json() == alert.to_json()


def test_body_carries_rule_item_entities_and_reasons(webhook_receiver: WebhookReceiver) -> None:
    send_webhook(make_alert(), channel_for(webhook_receiver))
    body = webhook_receiver.wait_for(1)[0].json
    assert body["rule"]["id"] == "acme-recalls"
    assert body["rule"]["query"] == "acme AND recall*"
    item = body["item"]
    assert item["title"] == "Acme recalls widgets in France"
    assert item["url"] == "https://news.example/acme-recall"
    assert item["feed_name"] == "Example News"
    assert item["published"] == "2024-05-06T07:08:09+00:00"
    assert item["summary"].startswith("Acme Corp")
    assert [(e["text"], e["label"]) for e in body["entities"]] == [
        ("Acme", "ORG"),
        ("France", "GPE"),
    ]
    assert body["matched"][1] == {
        "term": "recall*",
        "field": "title",
        "start": 5,
        "end": 12,
        "text": "recalls",
    }


def test_tampered_body_fails_verification(webhook_receiver: WebhookReceiver) -> None:
    send_webhook(make_alert(), channel_for(webhook_receiver))
    got = webhook_receiver.wait_for(1)[0]
    tampered = got.body.replace(b"Acme", b"Acne", 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_receiver.secret).verify(tampered, got.headers)


def test_wrong_secret_is_not_verified() -> None:
    with WebhookReceiver() as receiver:
        other = WebhookReceiver()  # never started: only its secret is used
        channel = channel_for(receiver, secret=other.secret)
        other.stop()
        send_webhook(make_alert(), channel)
        assert receiver.wait_for(1)[0].verified is False


def test_rotation_signs_with_every_key_and_both_receivers_verify() -> None:
    with WebhookReceiver() as old_side, WebhookReceiver() as new_side:
        # Newest first, as in the config: [new, old].
        keys = [new_side.secret, old_side.secret]
        alert = make_alert()
        for receiver in (old_side, new_side):
            send_webhook(alert, channel_for(receiver, secret=keys))
        got_old, got_new = old_side.wait_for(1)[0], new_side.wait_for(1)[0]
        assert got_old.verified
        assert got_new.verified
    signatures = got_new.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(sig.startswith("v1,") for sig in signatures)
    for key in keys:  # each key alone verifies the same request
        Webhook(key).verify(got_new.body, got_new.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(got_new.body, got_new.headers)


def test_a_single_key_list_sends_one_signature(webhook_receiver: WebhookReceiver) -> None:
    send_webhook(make_alert(), channel_for(webhook_receiver, secret=[webhook_receiver.secret]))
    got = webhook_receiver.wait_for(1)[0]
    assert got.verified
    assert " " not in got.headers["webhook-signature"]


def test_unsigned_when_no_secret(webhook_receiver: WebhookReceiver) -> None:
    send_webhook(make_alert(), channel_for(webhook_receiver, signed=False))
    got = webhook_receiver.wait_for(1)[0]
    assert "webhook-signature" not in got.headers
    assert got.headers["webhook-id"] == "a1b2c3d4"
    assert got.headers["webhook-timestamp"].isdigit()
    assert not got.verified


def test_timestamp_comes_from_the_clock(webhook_receiver: WebhookReceiver) -> None:
    send_webhook(
        make_alert(), channel_for(webhook_receiver, signed=False), now=lambda: 1700000000.7
    )
    assert webhook_receiver.wait_for(1)[0].headers["webhook-timestamp"] == "1700000000"


def test_custom_headers_are_sent_but_cannot_replace_protocol_headers(
    webhook_receiver: WebhookReceiver,
) -> None:
    headers = {"Authorization": "Bearer t0ken", "X-Team": "desk", "Webhook-Id": "forged"}
    send_webhook(make_alert(), channel_for(webhook_receiver, headers=headers))
    got = webhook_receiver.wait_for(1)[0]
    assert got.headers["authorization"] == "Bearer t0ken"
    assert got.headers["x-team"] == "desk"
    assert got.headers["webhook-id"] == "a1b2c3d4"
    assert got.verified


def test_a_shared_client_is_used_and_left_open(webhook_receiver: WebhookReceiver) -> None:
    with httpx.Client() as client:
        send_webhook(make_alert(), channel_for(webhook_receiver), client=client)
        send_webhook(make_alert(), channel_for(webhook_receiver), client=client)
        assert not client.is_closed
    assert [r.verified for r in webhook_receiver.wait_for(2)] == [True, True]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(webhook_receiver: WebhookReceiver, status: int) -> None:
    webhook_receiver.respond_with(status)
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel_for(webhook_receiver))
    assert caught.value.transient
    assert caught.value.status == status
    assert caught.value.channel == "webhook"


def test_retry_sequence_ends_in_success(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(503, 503, 200)
    channel = channel_for(webhook_receiver)
    for _ in range(2):
        with pytest.raises(DeliveryError):
            send_webhook(make_alert(), channel)
    send_webhook(make_alert(), channel)
    assert [r.status for r in webhook_receiver.received] == [503, 503, 200]
    assert len({r.id for r in webhook_receiver.received}) == 1  # same id: receivers dedupe


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_client_errors_are_permanent(webhook_receiver: WebhookReceiver, status: int) -> None:
    webhook_receiver.respond_with(Reply(status, body="no such hook\r\nat all"))
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel_for(webhook_receiver))
    assert not caught.value.transient
    assert caught.value.status == status
    assert caught.value.retry_after is None
    assert "no such hook at all" in caught.value.reason


def test_redirect_is_permanent_and_not_followed(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(Reply(301, headers={"Location": "/elsewhere"}))
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel_for(webhook_receiver))
    assert not caught.value.transient
    assert caught.value.status == 301
    assert len(webhook_receiver.received) == 1


def test_429_with_retry_after_seconds(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(Reply(429, headers={"Retry-After": "42"}))
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel_for(webhook_receiver))
    assert caught.value.transient
    assert caught.value.status == 429
    assert caught.value.retry_after == 42.0


def test_503_with_retry_after_http_date(webhook_receiver: WebhookReceiver) -> None:
    now = 1_700_000_000.0
    when = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    webhook_receiver.respond_with(Reply(503, headers={"Retry-After": when}))
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel_for(webhook_receiver, signed=False), now=lambda: now)
    assert caught.value.retry_after == 90.0


def test_connection_refused_is_transient() -> None:
    channel = WebhookChannel.model_validate(
        {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook", "timeout": 2}
    )
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel)
    assert caught.value.transient
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_timeout_is_transient(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(Reply(200, delay=5))
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel_for(webhook_receiver, timeout=0.2))
    assert caught.value.transient
    assert "timed out" in caught.value.reason


def test_deliver_labels_errors_with_the_channel_name(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(404)
    channel = channel_for(webhook_receiver)
    with pytest.raises(DeliveryError) as caught:
        deliver(make_alert(), "ops-hook", channel)
    assert caught.value.channel == "ops-hook"
    assert not caught.value.transient
    assert caught.value.status == 404
    deliver(make_alert(), "ops-hook", channel)  # the next answer is 200
    assert webhook_receiver.received[-1].verified


def test_errors_never_mention_the_url_or_the_secret(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(Reply(500, body="boom"))
    channel = channel_for(webhook_receiver, url=webhook_receiver.url + "?token=s3cr3t")
    with pytest.raises(DeliveryError) as caught:
        send_webhook(make_alert(), channel)
    text = f"{caught.value} {caught.value!r} {json.dumps(caught.value.to_json())}"
    assert "s3cr3t" not in text
    assert webhook_receiver.secret not in text
    assert webhook_receiver.secret[6:] not in text


def test_body_is_stable_compact_sorted_json() -> None:
    alert = make_alert("Grève à Paris — “quoted”")
    body = webhook_body(alert)
    assert body == webhook_body(alert)
    assert b": " not in body.replace(b'": "', b"")  # compact separators
    assert json.loads(body) == alert.to_json()
    assert list(json.loads(body)) == sorted(alert.to_json())
    assert "Grève".encode() in body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("soon", None),
        ("-5", None),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
        ("Tue, 14 Nov 2023 22:12:00 GMT", 0.0),  # in the past
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_700_000_000.0) == expected


@pytest.mark.parametrize(
    ("value", "reason"), [("Bearer s3cr3t-t0ken\n", "control character"), ("tøken-s3cr3t", "ASCII")]
)
def test_a_header_value_that_cannot_be_sent_is_a_config_error_without_the_value(
    value: str, reason: str
) -> None:
    text = (
        "channels:\n  ops: {type: webhook, url: 'http://127.0.0.1:9/x',"
        " headers: {Authorization: '${TOKEN}'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", {"TOKEN": value})
    [problem] = caught.value.problems
    assert reason in problem.message and "s3cr3t" not in str(problem)


def test_an_error_that_quotes_a_secret_header_value_is_masked() -> None:
    """The HTTP library quotes a header value it refuses ("Illegal header value b'…'"):
    the reason, which goes to the log, the attempts and the dead letter, masks it."""
    with socket.socket() as listener:  # accepts the connection; the request never comes
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        valid = WebhookChannel.model_validate({"type": "webhook", "url": url, "timeout": 2})
        # Past validation (as a direct caller could), so the library refuses the value.
        headers = {"Authorization": SecretStr("Bearer s3cr3t-t0ken\n")}
        channel = valid.model_copy(update={"headers": headers})
        with pytest.raises(DeliveryError) as caught:
            deliver(make_alert(), "ops", channel)
    assert "s3cr3t" not in caught.value.reason and "**********" in caught.value.reason


def test_a_header_name_that_is_not_an_http_token_is_a_config_error() -> None:
    text = (
        "channels:\n  ops: {type: webhook, url: 'http://127.0.0.1:9/x',"
        " headers: {'X Token': abc}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", {})
    [problem] = caught.value.problems
    assert "'X Token' is not a valid HTTP header name" in problem.message
