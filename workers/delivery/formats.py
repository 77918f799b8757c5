"""Webhook payload formats: ``standard``, ``slack``, ``teams`` and ``template``.

Role: the pure half of webhook delivery. Input: one alert (or a digest: several alerts
and the digest id) and the :class:`~monitor.config.WebhookChannel`, whose ``format``
picks the shape. Output: a :class:`Payload`, the exact bytes to send and their
``Content-Type``; :mod:`.webhook` signs and posts them unchanged.

Shapes:

* ``standard``: our JSON, ``alert.to_json()`` (a digest: ``{"v": 1, "type": "digest",
  "id", "count", "alerts": [...]}``), compact with sorted keys. ``kind``, ``thread_id``,
  ``reason`` and ``story`` in it let a receiver thread follow-ups to the first alert.
* ``slack``: a Slack incoming-webhook message, ``{"text": fallback, "blocks": [...]}``:
  a header, the headline linked, the rule, the matched terms, the entities.
* ``teams``: a Teams incoming-webhook message carrying one Adaptive Card,
  ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": {...}}]}``.
* ``template``: the channel's Jinja2 template, rendered at send time with ``alert``
  (``Alert.to_json()``), or for a digest ``alerts`` (a list of those) and
  ``digest_id``. ``Content-Type`` is the channel's own ``Content-Type`` header if it
  sets one, else ``application/json``, in which case the output must parse as JSON.
  The environment is Jinja2's ``ImmutableSandboxedEnvironment`` (a template cannot
  reach Python internals nor change its inputs), autoescaping is off, ``tojson`` writes
  plain JSON and undefined names are errors (``StrictUndefined``). Every template
  failure is a permanent DeliveryError naming the problem: retrying cannot fix it.

Invariants: the same input gives the same bytes; feed text is escaped for the target's
markup (Slack mrkdwn, Adaptive Card markdown); links are made only for http(s) URLs;
a digest lists at most :data:`DIGEST_LIST_MAX` alerts in chat formats (message size
limits), then says how many more there are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from monitor.config import WebhookChannel
from monitor.items import Item
from workers.delivery.digest_render import digest_json, digest_title
from workers.delivery.errors import DeliveryError
from workers.delivery.render import (
    compact_json,
    entities_by_label,
    headline,
    matched_line,
    one_line,
    truncate,
    webhook_body,
    why_again,
    why_line,
)
from workers.model import Alert, Entity, MatchedTerm, StoryView

__all__ = [
    "DIGEST_LIST_MAX",
    "Payload",
    "digest_payload",
    "payload",
    "render_template",
    "sample_alert",
    "slack_digest",
    "slack_message",
    "teams_digest",
    "teams_message",
    "template_problem",
]

JSON = "application/json"
DIGEST_LIST_MAX = 40  # Slack allows 50 blocks a message; Teams about 28 KB
_ADAPTIVE = "application/vnd.microsoft.card.adaptive"
_SECTION_MAX = 2900  # Slack: 3000 characters per section text
_HEADER_MAX = 150  # Slack: 150 characters per header
_REASON_MAX = 300  # characters of a template error kept in the reason


@dataclass(frozen=True, slots=True)
class Payload:
    """The exact bytes of a webhook body and the media type to send them as."""

    body: bytes
    content_type: str = JSON


def payload(alert: Alert, channel: WebhookChannel) -> Payload:
    """The body of one alert in the channel's format."""
    match channel.format:
        case "slack":
            return Payload(compact_json(slack_message(alert)))
        case "teams":
            return Payload(compact_json(teams_message(alert)))
        case "template":
            return _templated(channel, {"alert": alert.to_json()})
        case _:
            return Payload(webhook_body(alert))


def digest_payload(alerts: Sequence[Alert], digest_id: str, channel: WebhookChannel) -> Payload:
    """The body of a digest in the channel's format."""
    match channel.format:
        case "slack":
            return Payload(compact_json(slack_digest(alerts)))
        case "teams":
            return Payload(compact_json(teams_digest(alerts)))
        case "template":
            context = {"alerts": [a.to_json() for a in alerts], "digest_id": digest_id}
            return _templated(channel, context)
        case _:
            return Payload(compact_json(digest_json(alerts, digest_id)))


def _templated(channel: WebhookChannel, context: Mapping[str, object]) -> Payload:
    content_type = next(
        (
            value.get_secret_value()
            for name, value in channel.headers.items()
            if name.lower() == "content-type"
        ),
        JSON,
    )
    text = render_template(channel.template or "", context)
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON or media.endswith("+json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeliveryError(
                "webhook",
                f"template output is not valid JSON ({exc.msg} at line {exc.lineno}); "
                "use the tojson filter, or set a Content-Type header for other bodies",
                False,
            ) from exc
    return Payload(text.encode("utf-8"), content_type)


def sample_alert() -> Alert:
    """A follow-up alert with every field an alert can carry set (``template_problem``)."""
    published = datetime(2024, 5, 6, 7, 8, 0, tzinfo=UTC)
    item = Item(
        key="sample-item",
        feed_url="https://news.example.org/world.xml",
        feed_name="Example wire",
        url="https://news.example.org/world/sample",
        title="Russia sought China military aid, says US",
        summary="US officials said Russia asked China for weapons.",
        guid="https://news.example.org/world/sample",
        published=published,
        tags=("World",),
        language="en",
    )
    return Alert(
        id="0123456789abcdef0123456789abcdef",
        rule_id="sample-rule",
        query="China AND Russia",
        item=item,
        entities=(Entity("China", "GPE", 20, 25, "China", 0.8),),
        matched=(MatchedTerm("China", "title", 20, 25, "China"),),
        created=published,
        story_id="0123456789abcdef",
        severity="warning",
        kind="follow_up",
        thread_id="fedcba9876543210fedcba9876543210",
        thread_title="Russia sought China military aid",
        reason="the story reached 3 outlets",
        story_view=StoryView(
            "0123456789abcdef", published.timestamp(), (("Example wire", 0.0),), 1
        ),
        explain=("China", "Russia"),
        similarity=0.5,
    )


def template_problem(channel: WebhookChannel, *, single: bool, digest: bool) -> str | None:
    """Why ``channel``'s template fails on :func:`sample_alert` (``single``) or on a digest
    of it (``digest``), or None: a misspelt name (``alert.itme``) or output that is not
    JSON shows in ``wirewatch check``, not in the dead letters of the first real alert.
    A template that needs a field only some alerts fill can still fail later.
    """
    if channel.format != "template" or not channel.template:
        return None
    alert = sample_alert()
    try:
        if single:
            payload(alert, channel)
        if digest:
            digest_payload([alert, alert], "sample-digest", channel)
    except DeliveryError as exc:
        return exc.reason
    return None


def _http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _entities_text(alert: Alert) -> str:
    return "; ".join(
        f"{label}: {', '.join(texts)}" for label, texts in entities_by_label(alert).items()
    )


# --- Template ---------------------------------------------------------------------------


def _tojson(value: object, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = _tojson  # plain JSON, not Jinja's HTML-safe variant
    return env


@lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    # Cached per source text: channels are few, and config reloads bring new sources.
    return _environment().from_string(source)


def render_template(source: str, context: Mapping[str, object]) -> str:
    """Render ``source`` with ``context``; a permanent DeliveryError on any failure."""
    try:
        return _compile(source).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise DeliveryError(
            "webhook", f"template syntax error on line {exc.lineno}: {_short(exc)}", False
        ) from exc
    except jinja2.UndefinedError as exc:
        raise DeliveryError("webhook", f"template error: {_short(exc)}", False) from exc
    except jinja2.TemplateError as exc:  # includes sandbox SecurityError
        raise DeliveryError(
            "webhook", f"template error ({type(exc).__name__}): {_short(exc)}", False
        ) from exc
    except Exception as exc:  # what an expression raises: TypeError, ZeroDivisionError…
        raise DeliveryError(
            "webhook", f"template failed ({type(exc).__name__}): {_short(exc)}", False
        ) from exc


def _short(exc: BaseException) -> str:
    text = one_line(str(exc)) or type(exc).__name__
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


# --- Slack -----------------------------------------------------------------------------


def _mrkdwn(text: str) -> str:
    """Feed text made inert in Slack mrkdwn (Slack's three control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(alert: Alert) -> str:
    text = _mrkdwn(headline(alert))
    url = alert.item.url
    if not _http(url):
        return f"*{text}*"
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"*<{safe}|{text}>*"


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": truncate(f"*{name}*\n{value}", 2000)}


def slack_message(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message for one alert."""
    fields = [_field("Rule", f"`{_mrkdwn(one_line(alert.rule_id))}`")]
    if why_again(alert):
        fields.insert(0, _field("Why again", _mrkdwn(why_again(alert))))
    if why_line(alert):
        fields.append(_field("Why", _mrkdwn(why_line(alert))))
    if alert.matched:
        fields.append(_field("Matched", _mrkdwn(matched_line(alert))))
    if alert.entities:
        fields.append(_field("Entities", _mrkdwn(_entities_text(alert))))
    feed = alert.item.feed_name or alert.item.feed_url
    fields.append(_field("Feed", _mrkdwn(one_line(feed))))
    section = _slack_link(alert)
    if alert.item.summary:
        section += "\n" + _mrkdwn(one_line(alert.item.summary))
    return {
        "text": _mrkdwn(f"[wirewatch] {one_line(alert.rule_id)}: {headline(alert)}"),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(headline(alert), _HEADER_MAX)},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(section, _SECTION_MAX)},
            },
            {"type": "section", "fields": fields},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _mrkdwn(f"alert {alert.id}")}],
            },
        ],
    }


def slack_digest(alerts: Sequence[Alert]) -> dict[str, Any]:
    """One Slack message listing a digest's headlines, each linked, with rule and terms."""
    title = digest_title(alerts)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, _HEADER_MAX)}}
    ]
    for alert in alerts[:DIGEST_LIST_MAX]:
        line = f"{_slack_link(alert)}\n`{_mrkdwn(one_line(alert.rule_id))}`"
        if alert.matched:
            line += " · " + _mrkdwn(matched_line(alert))
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(line, _SECTION_MAX)}}
        )
    if len(alerts) > DIGEST_LIST_MAX:
        more = f"… and {len(alerts) - DIGEST_LIST_MAX} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": _mrkdwn(title), "blocks": blocks}


# --- Teams -----------------------------------------------------------------------------


def _md(text: str) -> str:
    """Feed text made inert in Adaptive Card markdown."""
    # Backslash escapes of the characters that start emphasis, code or a link.
    return "".join("\\" + ch if ch in "\\`*_~[]<>" else ch for ch in text)


def _teams_link(alert: Alert) -> str:
    text = _md(headline(alert))
    url = alert.item.url
    if not _http(url):
        return text
    return f"[{text}]({url.replace(' ', '%20').replace(')', '%29')})"


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if actions:
        content["actions"] = actions
    return {
        "type": "message",
        "attachments": [{"contentType": _ADAPTIVE, "contentUrl": None, "content": content}],
    }


def teams_message(alert: Alert) -> dict[str, Any]:
    """A Teams incoming-webhook message (one Adaptive Card) for one alert."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _teams_link(alert),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    if alert.item.summary:
        body.append({"type": "TextBlock", "text": _md(one_line(alert.item.summary)), "wrap": True})
    facts = [{"title": "Rule", "value": _md(one_line(alert.rule_id))}]
    if why_again(alert):
        facts.insert(0, {"title": "Why again", "value": _md(why_again(alert))})
    if why_line(alert):
        facts.append({"title": "Why", "value": _md(why_line(alert))})
    if alert.matched:
        facts.append({"title": "Matched", "value": _md(matched_line(alert))})
    if alert.entities:
        facts.append({"title": "Entities", "value": _md(_entities_text(alert))})
    facts.append(
        {"title": "Feed", "value": _md(one_line(alert.item.feed_name or alert.item.feed_url))}
    )
    body.append({"type": "FactSet", "facts": facts})
    actions = []
    if _http(alert.item.url):
        actions.append({"type": "Action.OpenUrl", "title": "Read the story", "url": alert.item.url})
    return _card(body, actions)


def teams_digest(alerts: Sequence[Alert]) -> dict[str, Any]:
    """One Teams message listing a digest's headlines, each linked, with its rule."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _md(digest_title(alerts)),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    for alert in alerts[:DIGEST_LIST_MAX]:
        line = f"- {_teams_link(alert)} ({_md(one_line(alert.rule_id))})"
        body.append({"type": "TextBlock", "text": line, "wrap": True, "spacing": "Small"})
    if len(alerts) > DIGEST_LIST_MAX:
        more = f"… and {len(alerts) - DIGEST_LIST_MAX} more"
        body.append({"type": "TextBlock", "text": more, "isSubtle": True, "wrap": True})
    return _card(body, [])
