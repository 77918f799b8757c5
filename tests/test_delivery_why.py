"""An alert raised by an ``about:`` clause alone still says why, in every body we render.

Such an alert has no matched terms; the clauses that held (with the item's similarity)
are its only reason, shown as a "Why" line in e-mail text and HTML, Slack and Teams."""

from __future__ import annotations

from dataclasses import replace

from receivers import WebhookReceiver, webhook_receiver
from test_delivery_formats import channel_for, make_alert

from workers.delivery import send_webhook
from workers.delivery.formats import slack_message, teams_message
from workers.delivery.render import email_html, email_text, why_line
from workers.model import Alert

__all__ = ["webhook_receiver"]  # the fixture, imported for pytest

CLAUSE = 'about:"product recalls <in> Europe"~0.45 similarity=0.62'


def about_only() -> Alert:
    return replace(
        make_alert(), query=CLAUSE.split(" similarity")[0], matched=(), explain=(CLAUSE,)
    )


def test_why_line_lists_the_clauses_that_held() -> None:
    assert why_line(about_only()) == CLAUSE
    two = replace(about_only(), explain=(CLAUSE, "acme"))
    assert why_line(two) == f"{CLAUSE}; acme"
    assert why_line(make_alert()) == ""  # nothing recorded: no line


def test_email_bodies_say_why() -> None:
    text = email_text(about_only())
    assert f"\nWhy:       {CLAUSE}\n" in text
    assert "Matched:" not in text
    html = email_html(about_only())
    assert "<th align=left>Why</th><td>about:&quot;product recalls &lt;in&gt; Europe&quot;" in html
    assert "Why:" not in email_text(make_alert())
    assert ">Why<" not in email_html(make_alert())


def test_slack_and_teams_say_why(webhook_receiver: WebhookReceiver) -> None:
    send_webhook(about_only(), channel_for(webhook_receiver, format="slack"))
    fields = [f["text"] for f in webhook_receiver.wait_for(1)[0].json["blocks"][2]["fields"]]
    assert '*Why*\nabout:"product recalls &lt;in&gt; Europe"~0.45 similarity=0.62' in fields
    card = teams_message(about_only())["attachments"][0]["content"]
    facts = {fact["title"]: fact["value"] for fact in card["body"][-1]["facts"]}
    assert facts["Why"] == r'about:"product recalls \<in\> Europe"\~0.45 similarity=0.62'
    assert "Why" not in {
        f["text"].split("\n")[0] for f in slack_message(make_alert())["blocks"][2]["fields"]
    }
