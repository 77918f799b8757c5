"""What a digest looks like: several alerts sent as one message.

Role: the pure half of digest delivery, beside :mod:`.render` (one alert). Input: the
alerts of one digest window, in the order they were raised, and the digest id chosen by
the caller (stable across retries). Output: JSON, a title/subject, text, HTML, log fields.

Invariants:

* :func:`digest_json` is ``{"v": 1, "type": "digest", "id", "count", "alerts"}`` with each
  alert's ``to_json()``; ``count`` is ``len(alerts)``.
* :func:`digest_title` is one line of at most :data:`~.render.SUBJECT_MAX` characters:
  ``[wirewatch] digest: N alerts (rule-a, rule-b)``, rules in order of first appearance.
* :func:`digest_html` escapes all feed text (the helpers of :mod:`.render`), links only
  http(s) URLs and highlights matched terms with ``<mark>``.
* Nothing here reads a clock: the same digest renders the same way on every retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from workers.delivery.render import (
    SUBJECT_MAX,
    entities_by_label,
    feed_line,
    headline,
    highlight,
    matched_line,
    one_line,
    safe_href,
    truncate,
)
from workers.model import ALERT_VERSION, Alert

__all__ = [
    "digest_html",
    "digest_json",
    "digest_log_fields",
    "digest_rules",
    "digest_text",
    "digest_title",
]


def digest_json(alerts: Sequence[Alert], digest_id: str) -> dict[str, Any]:
    """The ``standard`` webhook body of a digest (as a dict; bytes via ``compact_json``)."""
    return {
        "v": ALERT_VERSION,
        "type": "digest",
        "id": digest_id,
        "count": len(alerts),
        "alerts": [alert.to_json() for alert in alerts],
    }


def digest_rules(alerts: Sequence[Alert]) -> list[str]:
    """The rule ids of a digest, each once, in order of first appearance."""
    rules: list[str] = []
    for alert in alerts:
        rule = one_line(alert.rule_id)
        if rule not in rules:
            rules.append(rule)
    return rules


def _count(alerts: Sequence[Alert]) -> str:
    return f"{len(alerts)} alert" + ("" if len(alerts) == 1 else "s")


def digest_title(alerts: Sequence[Alert]) -> str:
    """``[wirewatch] digest: N alerts (rules)``: one line, a safe e-mail subject."""
    rules = ", ".join(digest_rules(alerts))
    return truncate(f"[wirewatch] digest: {_count(alerts)} ({rules})", SUBJECT_MAX)


def _entities(alert: Alert) -> str:
    return "; ".join(
        f"{label}: {', '.join(texts)}" for label, texts in entities_by_label(alert).items()
    )


def digest_text(alerts: Sequence[Alert], digest_id: str) -> str:
    """The text/plain rendering: one numbered block per alert."""
    lines = [f"wirewatch digest: {_count(alerts)}", ""]
    for number, alert in enumerate(alerts, 1):
        lines += [f"{number}. {headline(alert)}"]
        if alert.item.url:
            lines.append(f"   {alert.item.url}")
        lines.append(f"   Rule:     {one_line(alert.rule_id)}")
        if alert.matched:
            lines.append(f"   Matched:  {matched_line(alert)}")
        if alert.entities:
            lines.append(f"   Entities: {one_line(_entities(alert))}")
        lines.append(f"   Feed:     {one_line(feed_line(alert))}")
        lines.append("")
    lines.append(f"Digest {digest_id}")
    return "\n".join(lines) + "\n"


def _html_item(alert: Alert) -> str:
    item = alert.item
    in_title = [term for term in alert.matched if term.field == "title"]
    in_summary = [term for term in alert.matched if term.field == "summary"]
    title = highlight(item.title, in_title) or escape(headline(alert))
    href = safe_href(item.url)
    parts = [f'<a href="{href}">{title}</a>' if href else title]
    parts.append(f"<br><small>Rule <code>{escape(alert.rule_id)}</code>")
    if alert.matched:
        marked = ", ".join(
            f"<mark>{escape(one_line(term.text) or term.term)}</mark>" for term in alert.matched
        )
        parts.append(f" · matched {marked}")
    parts.append(f" · {escape(feed_line(alert))}</small>")
    if item.summary:
        parts.append(f"<br>{highlight(item.summary, in_summary)}")
    if alert.entities:
        parts.append(f"<br><small>Entities: {escape(_entities(alert))}</small>")
    return "<li>" + "".join(parts) + "</li>"


def digest_html(alerts: Sequence[Alert], digest_id: str) -> str:
    """The text/html rendering: a list of linked, highlighted headlines."""
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head><body>',
        f"<h2>wirewatch digest: {escape(_count(alerts))}</h2>",
        "<ol>",
        *(_html_item(alert) for alert in alerts),
        "</ol>",
        f"<p><small>Digest {escape(digest_id)}</small></p></body></html>",
    ]
    return "\n".join(out) + "\n"


def digest_log_fields(alerts: Sequence[Alert], digest_id: str) -> dict[str, object]:
    """The key-values of the ``alert_digest`` log event."""
    return {
        "digest_id": digest_id,
        "count": len(alerts),
        "rules": digest_rules(alerts),
        "alert_ids": [alert.id for alert in alerts],
        "titles": [headline(alert) for alert in alerts],
    }
