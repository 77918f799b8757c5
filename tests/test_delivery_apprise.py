"""Apprise delivery into a real local receiver (Apprise's ``json://`` and ``form://``).

Covers: the notification arrives with the title ``[wirewatch] <rule>: <headline>`` and
the text rendering as body, through ``deliver`` too; every configured URL is notified;
a closed port is a transient error; a URL Apprise does not know is permanent; neither
error shows a URL (they carry tokens); without the package the error is permanent and
says how to install it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from receivers import WebhookReceiver, free_port, webhook_receiver

from monitor.config import AppriseChannel
from monitor.items import Item
from workers.delivery import DeliveryError, deliver, send_apprise
from workers.delivery.apprise_channel import MISSING
from workers.model import Alert, Entity, MatchedTerm

__all__ = ["webhook_receiver"]  # the fixture, imported for pytest

TITLE = "[wirewatch] acme-recalls: Acme recalls widgets in France"


def make_alert() -> Alert:
    return Alert(
        id="a1b2c3d4",
        rule_id="acme-recalls",
        query="acme AND recall*",
        item=Item(
            key="k1",
            feed_url="https://news.example/feed.xml",
            feed_name="Example News",
            url="https://news.example/acme-recall",
            title="Acme recalls widgets in France",
            published=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        ),
        entities=(Entity("Acme", "ORG", 0, 4),),
        matched=(MatchedTerm("recall*", "title", 5, 12, "recalls"),),
    )


def apprise_url(receiver: WebhookReceiver, scheme: str = "json", path: str = "/hook") -> str:
    return receiver.url.replace("http://", f"{scheme}://").replace("/hook", path)


def channel(*urls: str) -> AppriseChannel:
    return AppriseChannel.model_validate({"type": "apprise", "urls": list(urls)})


def test_json_notification_arrives_with_title_and_body(webhook_receiver: WebhookReceiver) -> None:
    send_apprise(make_alert(), channel(apprise_url(webhook_receiver)))
    [got] = webhook_receiver.wait_for(1)
    assert got.verified is False  # Apprise does not sign; the receiver still records it
    assert got.path == "/hook"
    assert got.json["title"] == TITLE
    message = got.json["message"]
    assert message.startswith("Acme recalls widgets in France\nhttps://news.example/acme-recall\n")
    assert "Rule:      acme-recalls" in message
    assert "ORG: Acme" in message


def test_form_notification_through_deliver(webhook_receiver: WebhookReceiver) -> None:
    deliver(make_alert(), "ops-apprise", channel(apprise_url(webhook_receiver, "form", "/f")))
    [got] = webhook_receiver.wait_for(1)
    assert got.path == "/f"
    assert got.form["title"] == TITLE
    assert "Rule:      acme-recalls" in got.form["message"]


def test_every_url_is_notified() -> None:
    with WebhookReceiver() as first, WebhookReceiver() as second:
        send_apprise(make_alert(), channel(apprise_url(first), apprise_url(second, "form")))
        assert first.wait_for(1)[0].json["title"] == TITLE
        assert second.wait_for(1)[0].form["title"] == TITLE


def test_a_closed_port_is_transient_and_hides_the_url() -> None:
    url = f"json://127.0.0.1:{free_port()}/hook?token=s3cr3t"
    with pytest.raises(DeliveryError) as caught:
        deliver(make_alert(), "ops-apprise", channel(url))
    assert caught.value.transient
    assert caught.value.channel == "ops-apprise"
    assert "s3cr3t" not in f"{caught.value} {caught.value!r} {caught.value.to_json()}"


def test_an_unknown_url_is_permanent_and_hides_the_url() -> None:
    with pytest.raises(DeliveryError) as caught:
        send_apprise(make_alert(), channel("nosuchservice://s3cr3t@host"))
    assert not caught.value.transient
    assert caught.value.reason == "url #1 is not a URL Apprise knows"


def test_without_apprise_installed_the_error_is_permanent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # what a missing package looks like
    with pytest.raises(DeliveryError) as caught:
        deliver(make_alert(), "ops-apprise", channel("json://127.0.0.1/hook"))
    assert not caught.value.transient
    assert caught.value.reason == MISSING
    assert "pip install 'wirewatch[apprise]'" in str(caught.value)
