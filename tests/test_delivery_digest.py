"""Digests: several alerts delivered as one message, on every channel type, for real.

Covers: webhook ``standard`` (the digest JSON, ``webhook-id`` = digest id, signed),
``slack`` and ``teams`` (one message listing linked headlines), ``template`` (gets
``alerts`` and ``digest_id``); e-mail (one message: subject with the count and rules,
``Message-ID`` from the digest id, text and HTML listing every alert with highlights
and entities); log (one ``alert_digest`` line); Apprise (one notification); an empty
digest sends nothing; errors carry the channel name; long digests are cut in chat
formats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from receivers import SmtpSink, WebhookReceiver, smtp_sink, webhook_receiver
from structlog.testing import capture_logs

from monitor.config import AppriseChannel, EmailChannel, LogChannel, WebhookChannel
from monitor.items import Item
from workers.delivery import DeliveryError, deliver_digest
from workers.delivery.digest_render import digest_title
from workers.delivery.formats import DIGEST_LIST_MAX, slack_digest, teams_digest
from workers.model import Alert, Entity, MatchedTerm

__all__ = ["smtp_sink", "webhook_receiver"]  # fixtures, imported for pytest

DIGEST_ID = "dg-acme-0001"
T0 = datetime(2024, 5, 6, 7, 0, 0, tzinfo=UTC)


def make_alert(n: int, rule: str = "acme-recalls", title: str = "") -> Alert:
    title = title or f"Acme recalls widgets, part {n}"
    return Alert(
        id=f"alert-{n}",
        rule_id=rule,
        query="acme AND recall*",
        item=Item(
            key=f"k{n}",
            feed_url="https://news.example/feed.xml",
            feed_name="Example News",
            url=f"https://news.example/story/{n}",
            title=title,
            summary="Acme Corp said it would recall widgets.",
        ),
        entities=(Entity("Acme", "ORG", 0, 4),),
        matched=(MatchedTerm("recall*", "title", 5, 12, "recalls"),),
        created=T0 + timedelta(minutes=n),
    )


ALERTS = [
    make_alert(1),
    make_alert(2, "france-strikes", "Strike <in> France & more"),
    make_alert(3),
]


def hook(receiver: WebhookReceiver, **extra: object) -> WebhookChannel:
    data: dict[str, object] = {"type": "webhook", "url": receiver.url, "secret": receiver.secret}
    return WebhookChannel.model_validate(data | extra)


def test_standard_webhook_digest(webhook_receiver: WebhookReceiver) -> None:
    deliver_digest(ALERTS, DIGEST_ID, "ops-hook", hook(webhook_receiver))
    [got] = webhook_receiver.wait_for(1)
    assert got.verified
    assert got.id == DIGEST_ID
    assert got.json == {
        "v": 1,
        "type": "digest",
        "id": DIGEST_ID,
        "count": 3,
        "alerts": [alert.to_json() for alert in ALERTS],
    }


def test_slack_digest_lists_linked_headlines(webhook_receiver: WebhookReceiver) -> None:
    deliver_digest(ALERTS, DIGEST_ID, "slack", hook(webhook_receiver, format="slack"))
    [got] = webhook_receiver.wait_for(1)
    assert got.verified
    body = got.json
    assert body["text"] == "[wirewatch] digest: 3 alerts (acme-recalls, france-strikes)"
    sections = [block["text"]["text"] for block in body["blocks"][1:]]
    assert len(sections) == 3
    assert sections[0].startswith("*<https://news.example/story/1|Acme recalls widgets, part 1>*")
    assert "Strike &lt;in&gt; France &amp; more" in sections[1]
    assert "`france-strikes`" in sections[1]


def test_teams_digest_lists_linked_headlines(webhook_receiver: WebhookReceiver) -> None:
    deliver_digest(ALERTS, DIGEST_ID, "teams", hook(webhook_receiver, format="teams"))
    card = webhook_receiver.wait_for(1)[0].json["attachments"][0]["content"]
    texts = [block["text"] for block in card["body"]]
    assert texts[0] == "\\[wirewatch\\] digest: 3 alerts (acme-recalls, france-strikes)"
    assert (
        texts[1] == "- [Acme recalls widgets, part 1](https://news.example/story/1) (acme-recalls)"
    )
    assert len(texts) == 4


def test_chat_digests_are_cut_at_the_list_limit() -> None:
    many = [make_alert(n) for n in range(DIGEST_LIST_MAX + 5)]
    slack = slack_digest(many)
    assert len(slack["blocks"]) == 1 + DIGEST_LIST_MAX + 1
    assert slack["blocks"][-1]["elements"][0]["text"] == "… and 5 more"
    teams = teams_digest(many)["attachments"][0]["content"]["body"]
    assert teams[-1]["text"] == "… and 5 more"


def test_template_digest_gets_alerts_and_digest_id(webhook_receiver: WebhookReceiver) -> None:
    template = (
        '{"id": {{ digest_id | tojson }}, '
        '"titles": {{ alerts | map(attribute="item") | map(attribute="title") | list | tojson }}}'
    )
    channel = hook(webhook_receiver, format="template", template=template)
    deliver_digest(ALERTS, DIGEST_ID, "custom", channel)
    got = webhook_receiver.wait_for(1)[0]
    assert got.verified
    assert got.json == {"id": DIGEST_ID, "titles": [a.item.title for a in ALERTS]}


def test_webhook_digest_errors_carry_the_channel(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(503)
    with pytest.raises(DeliveryError) as caught:
        deliver_digest(ALERTS, DIGEST_ID, "ops-hook", hook(webhook_receiver))
    assert caught.value.transient
    assert caught.value.channel == "ops-hook"


def test_email_digest_is_one_message(smtp_sink: SmtpSink) -> None:
    channel = EmailChannel.model_validate(
        {
            "type": "email",
            "from": "wirewatch@desk.example",
            "to": ["analyst@desk.example"],
            "smtp": {"host": smtp_sink.host, "port": smtp_sink.port, "timeout": 5},
        }
    )
    deliver_digest(ALERTS, DIGEST_ID, "desk-mail", channel)
    [mail] = smtp_sink.wait_for(1)
    message = mail.message
    assert message["Subject"] == "[wirewatch] digest: 3 alerts (acme-recalls, france-strikes)"
    assert message["Message-ID"] == f"<{DIGEST_ID}@wirewatch>"
    assert message["Date"].datetime == T0 + timedelta(minutes=3)  # the newest alert
    assert mail.rcpt_tos == ["analyst@desk.example"]
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    text = text_part.get_content().replace("\r\n", "\n")
    assert "1. Acme recalls widgets, part 1\n   https://news.example/story/1\n" in text
    assert "   Rule:     france-strikes" in text
    assert "   Entities: ORG: Acme" in text
    html = html_part.get_content()
    assert '<a href="https://news.example/story/1">Acme <mark>recalls</mark> widgets' in html
    assert "Strike &lt;in&gt; France &amp; more" in html
    assert "<code>france-strikes</code>" in html
    assert "Entities: ORG: Acme" in html
    assert html.count("<li>") == 3


def test_log_digest_is_one_line() -> None:
    with capture_logs() as logs:
        deliver_digest(ALERTS, DIGEST_ID, "audit", LogChannel(type="log"))
    assert logs == [
        {
            "event": "alert_digest",
            "log_level": "info",
            "digest_id": DIGEST_ID,
            "count": 3,
            "rules": ["acme-recalls", "france-strikes"],
            "alert_ids": ["alert-1", "alert-2", "alert-3"],
            "titles": [a.item.title for a in ALERTS],
        }
    ]


def test_apprise_digest_is_one_notification(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.url.replace("http://", "json://")
    channel = AppriseChannel.model_validate({"type": "apprise", "urls": [url]})
    deliver_digest(ALERTS, DIGEST_ID, "chat", channel)
    [got] = webhook_receiver.wait_for(1)
    assert got.json["title"] == digest_title(ALERTS)
    assert "3. Acme recalls widgets, part 3" in got.json["message"]


def test_an_empty_digest_sends_nothing(webhook_receiver: WebhookReceiver) -> None:
    deliver_digest([], DIGEST_ID, "ops-hook", hook(webhook_receiver))
    assert webhook_receiver.received == []


def test_digest_title_is_one_line_and_singular_for_one() -> None:
    assert digest_title([make_alert(1, "a\r\nBcc: x")]) == "[wirewatch] digest: 1 alert (a Bcc: x)"
    long = digest_title([make_alert(n, f"rule-{n}") for n in range(100)])
    assert len(long) <= 200
