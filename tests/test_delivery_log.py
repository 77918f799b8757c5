"""Log delivery: one structured ``alert`` line, and no secret in any delivery log or error.

Covers: the fields of the line (rule, title, url, feed, entities as "text (LABEL)",
matched terms with positions); hostile text stays on one line; ``deliver`` dispatches a
log channel; configured secrets appear neither in the log lines of a delivery nor in its
errors, rendered through the real JSON renderer as well as ``capture_logs``.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
import structlog
from receivers import Reply, WebhookReceiver, free_port, webhook_receiver
from structlog.testing import capture_logs

from monitor.config import EmailChannel, LogChannel, WebhookChannel
from monitor.items import Item
from workers.delivery import DeliveryError, deliver, log_alert
from workers.model import Alert, Entity, MatchedTerm

__all__ = ["webhook_receiver"]  # the fixture, imported for pytest

SMTP_PASSWORD = "smtp-Pa55-do-not-log"


def make_alert(title: str = "Acme recalls widgets in France") -> Alert:
    return Alert(
        id="a1b2c3d4",
        rule_id="acme-recalls",
        query="acme AND recall*",
        item=Item(
            key="k1",
            feed_url="https://news.example/feed.xml",
            feed_name="Example News",
            url="https://news.example/acme-recall",
            title=title,
            published=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        ),
        entities=(Entity("Acme", "ORG", 0, 4), Entity("France", "GPE", 24, 30)),
        matched=(MatchedTerm("recall*", "title", 5, 12, "recalls"),),
    )


def test_one_alert_line_with_the_fields() -> None:
    with capture_logs() as logs:
        log_alert(make_alert(), LogChannel(type="log"))
    assert logs == [
        {
            "event": "alert",
            "log_level": "info",
            "alert_id": "a1b2c3d4",
            "rule": "acme-recalls",
            "query": "acme AND recall*",
            "title": "Acme recalls widgets in France",
            "url": "https://news.example/acme-recall",
            "feed": "Example News",
            "published": "2024-05-06T07:08:09+00:00",
            "entities": ["Acme (ORG)", "France (GPE)"],
            "matched": ["recall* (title 5-12)"],
        }
    ]


def test_deliver_dispatches_a_log_channel() -> None:
    with capture_logs() as logs:
        deliver(make_alert(), "audit", LogChannel(type="log"))
    assert [entry["event"] for entry in logs] == ["alert"]


def test_rendered_line_is_one_line_of_json() -> None:
    out = io.StringIO()
    saved = structlog.get_config()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    try:
        log_alert(make_alert("Line one\nLine two\r\n{forged}"), LogChannel(type="log"))
    finally:
        structlog.configure(**saved)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["title"] == "Line one Line two {forged}"


def test_secrets_never_reach_logs_or_errors(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.respond_with(Reply(500, body="oops"))
    hook = WebhookChannel.model_validate(
        {
            "type": "webhook",
            "url": webhook_receiver.url,
            "secret": webhook_receiver.secret,
            "headers": {"Authorization": "Bearer hdr-t0ken"},
            "timeout": 2,
        }
    )
    mail = EmailChannel.model_validate(
        {
            "type": "email",
            "from": "a@b.example",
            "to": ["c@d.example"],
            "smtp": {
                "host": "127.0.0.1",
                "port": free_port(),
                "username": "u",
                "password": SMTP_PASSWORD,
                "timeout": 0.5,
            },
        }
    )
    errors: list[DeliveryError] = []
    with capture_logs() as logs:
        for name, channel in (("hook", hook), ("mail", mail), ("log", LogChannel(type="log"))):
            try:
                deliver(make_alert(), name, channel)
            except DeliveryError as exc:
                errors.append(exc)
    assert [e.channel for e in errors] == ["hook", "mail"]
    text = repr(logs) + "".join(f"{e} {e!r} {e.to_json()}" for e in errors)
    for secret in (webhook_receiver.secret, "hdr-t0ken", SMTP_PASSWORD):
        assert secret not in text


@pytest.mark.parametrize("field", ["entities", "matched"])
def test_empty_lists_are_still_logged(field: str) -> None:
    alert = Alert(
        id="x",
        rule_id="r",
        query="q",
        item=Item(key="k", feed_url="f", feed_name="", url="u", title="t"),
    )
    with capture_logs() as logs:
        log_alert(alert, LogChannel(type="log"))
    assert logs[0][field] == []
    assert logs[0]["feed"] == "f"
    assert logs[0]["published"] is None
