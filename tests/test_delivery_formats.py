"""Webhook payload formats (slack, teams, template) into a real local receiver.

Covers: every format is sent with the Standard Webhooks headers and a signature over the
exact bytes sent; the Slack message has a fallback text and header/section/fields
blocks with the headline linked, the rule, matched terms and entities, with feed text
escaped for mrkdwn; the Teams message is an Adaptive Card in a ``message`` envelope;
a Jinja2 template gets ``alert`` and a ``tojson`` filter, runs sandboxed, and any
template failure (syntax, undefined name, sandbox escape, output that is not JSON) is
a permanent DeliveryError naming the problem; a template channel may set its own
Content-Type.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from receivers import WebhookReceiver, webhook_receiver

from monitor.config import WebhookChannel
from monitor.items import Item
from workers.delivery import DeliveryError, deliver, send_webhook
from workers.delivery.formats import render_template, slack_message, teams_message
from workers.model import Alert, Entity, MatchedTerm

__all__ = ["webhook_receiver"]  # the fixture, imported for pytest


def make_alert(title: str = "Acme recalls widgets in France", url: str = "") -> Alert:
    item = Item(
        key="k1",
        feed_url="https://news.example/feed.xml",
        feed_name="Example News",
        url=url or "https://news.example/acme-recall",
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


def channel_for(receiver: WebhookReceiver, **extra: object) -> WebhookChannel:
    data: dict[str, object] = {
        "type": "webhook",
        "url": receiver.url,
        "timeout": 2,
        "secret": receiver.secret,
    }
    data.update(extra)
    return WebhookChannel.model_validate(data)


@pytest.mark.parametrize("fmt", ["slack", "teams"])
def test_chat_formats_are_signed_json(webhook_receiver: WebhookReceiver, fmt: str) -> None:
    send_webhook(make_alert(), channel_for(webhook_receiver, format=fmt))
    [got] = webhook_receiver.wait_for(1)
    assert got.verified  # the signature covers the Slack/Teams bytes
    assert got.id == "a1b2c3d4"
    assert got.headers["content-type"] == "application/json"
    assert isinstance(got.json, dict)


def test_slack_message_shape(webhook_receiver: WebhookReceiver) -> None:
    send_webhook(make_alert(), channel_for(webhook_receiver, format="slack"))
    body = webhook_receiver.wait_for(1)[0].json
    assert body["text"] == "[wirewatch] acme-recalls: Acme recalls widgets in France"
    header, link, facts, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Acme recalls widgets in France"},
    }
    assert link["text"]["type"] == "mrkdwn"
    assert link["text"]["text"].startswith(
        "*<https://news.example/acme-recall|Acme recalls widgets in France>*\nAcme Corp said"
    )
    fields = [field["text"] for field in facts["fields"]]
    assert fields[0] == "*Rule*\n`acme-recalls`"
    assert fields[1] == "*Matched*\nAcme, recalls (recall*)"
    assert fields[2] == "*Entities*\nORG: Acme; GPE: France"
    assert context["elements"][0]["text"] == "alert a1b2c3d4"


def test_slack_escapes_feed_text_and_odd_urls() -> None:
    alert = make_alert("<!channel> A & B > C", url="https://x.example/a|b>c")
    message = slack_message(alert)
    assert message["text"] == "[wirewatch] acme-recalls: &lt;!channel&gt; A &amp; B &gt; C"
    # plain_text is never interpreted by Slack: the header keeps the text as it is.
    assert message["blocks"][0]["text"]["text"] == "<!channel> A & B > C"
    assert message["blocks"][1]["text"]["text"].startswith(
        "*<https://x.example/a%7Cb%3Ec|&lt;!channel&gt; A &amp; B &gt; C>*"
    )
    unlinked = slack_message(make_alert(url="javascript:alert(1)"))
    assert "javascript:" not in unlinked["blocks"][1]["text"]["text"]


def test_teams_adaptive_card_shape(webhook_receiver: WebhookReceiver) -> None:
    deliver(make_alert(), "teams-desk", channel_for(webhook_receiver, format="teams"))
    body = webhook_receiver.wait_for(1)[0].json
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    title = card["body"][0]
    assert title["type"] == "TextBlock"
    assert title["text"] == "[Acme recalls widgets in France](https://news.example/acme-recall)"
    facts = {fact["title"]: fact["value"] for fact in card["body"][-1]["facts"]}
    assert facts["Rule"] == "acme-recalls"
    assert facts["Matched"] == "Acme, recalls (recall\\*)"
    assert facts["Entities"] == "ORG: Acme; GPE: France"
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Read the story", "url": alert_url()}
    ]


def alert_url() -> str:
    return make_alert().item.url


def test_teams_escapes_markdown_in_feed_text() -> None:
    card = teams_message(make_alert("*Bold* [link](http://evil.example)"))
    text = card["attachments"][0]["content"]["body"][0]["text"]
    assert text.startswith("[\\*Bold\\* \\[link\\](http://evil.example)](https://")


TEMPLATE = '{"text": {{ (alert.rule.id ~ ": " ~ alert.item.title) | tojson }}, "n": 1}'


def test_template_renders_the_alert_and_is_signed(webhook_receiver: WebhookReceiver) -> None:
    channel = channel_for(webhook_receiver, format="template", template=TEMPLATE)
    send_webhook(make_alert('Say "hi" — ünïcode'), channel)
    [got] = webhook_receiver.wait_for(1)
    assert got.verified
    assert got.headers["content-type"] == "application/json"
    assert got.json == {"text": 'acme-recalls: Say "hi" — ünïcode', "n": 1}
    assert "ünïcode".encode() in got.body  # plain UTF-8, not \\u escapes


def test_template_with_its_own_content_type(webhook_receiver: WebhookReceiver) -> None:
    channel = channel_for(
        webhook_receiver,
        format="template",
        template="{{ alert.item.title }} <{{ alert.item.url }}>",
        headers={"content-type": "text/plain; charset=utf-8"},
    )
    send_webhook(make_alert(), channel)
    got = webhook_receiver.wait_for(1)[0]
    assert got.body == b"Acme recalls widgets in France <https://news.example/acme-recall>"
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.verified


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ alert.no_such_field }}", "template error: 'dict object' has no attribute"),
        ("{{ alert.__class__.__mro__ }}", "template error"),
        ("{{ alert.rule.update({'id': 'x'}) }}", "SecurityError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ alert.item.title }}", "template output is not valid JSON"),
    ],
)
def test_template_failures_are_permanent_and_named(
    webhook_receiver: WebhookReceiver, template: str, reason: str
) -> None:
    channel = channel_for(webhook_receiver, format="template", template=template)
    with pytest.raises(DeliveryError) as caught:
        deliver(make_alert(), "custom", channel)
    assert not caught.value.transient
    assert caught.value.channel == "custom"
    assert reason in caught.value.reason
    assert webhook_receiver.received == []  # nothing is sent


def test_a_template_syntax_error_at_send_time_is_permanent_and_named() -> None:
    """The config refuses such a template (tests/test_config.py); the sender still names
    the error if one reaches it (a channel built without validation)."""
    with pytest.raises(DeliveryError) as caught:
        render_template("{{ alert.item.title ", {})
    assert not caught.value.transient
    assert "template syntax error on line 1" in caught.value.reason


def test_render_template_has_a_tojson_filter_and_no_autoescape() -> None:
    out = render_template("{{ x | tojson }} {{ y }}", {"x": {"a": "<b>"}, "y": "<i>&"})
    assert out == '{"a": "<b>"} <i>&'
