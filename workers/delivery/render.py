"""What an alert looks like on the wire: webhook JSON, e-mail subject, text and HTML.

Role: the pure half of delivery. Input: an :class:`~workers.model.Alert`. Output: bytes
or strings, with no I/O, no clock and no configuration, so retries of one alert render
identically and the functions are easy to test.

Invariants:

* :func:`webhook_body` is compact UTF-8 JSON of ``alert.to_json()`` with sorted keys:
  the same alert always gives the same bytes (the signature covers them).
* :func:`email_subject` is one line: no CR, LF or other control character survives, so a
  hostile headline cannot inject a header; it is at most :data:`SUBJECT_MAX` characters.
* :func:`email_html` escapes every piece of feed text; the only markup is ours. Matched
  terms are wrapped in ``<mark>`` using their character spans; a span that is out of
  range or does not hold the matched text is not highlighted rather than misplaced.
  Links are only made for ``http``/``https`` URLs.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlsplit

from workers.model import Alert, MatchedTerm

__all__ = [
    "SUBJECT_MAX",
    "compact_json",
    "email_html",
    "email_subject",
    "email_text",
    "entities_by_label",
    "feed_line",
    "headline",
    "highlight",
    "matched_line",
    "one_line",
    "safe_href",
    "story_line",
    "truncate",
    "webhook_body",
    "why_again",
    "why_line",
    "why_matched",
]

SUBJECT_MAX = 200  # characters; long enough to triage, short enough for any mail client
WHY_MAX = 500  # characters of the satisfied clauses shown; a query may be long
_ELLIPSIS = "…"


def compact_json(data: object) -> bytes:
    """Compact UTF-8 JSON with sorted keys: equal data always gives equal bytes."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def webhook_body(alert: Alert) -> bytes:
    """The JSON body of a webhook: stable bytes for one alert."""
    return compact_json(alert.to_json())


def one_line(text: str) -> str:
    """``text`` with every control or line-separator character made a space, runs collapsed."""
    cleaned = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    return " ".join(cleaned.split())


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary when one is near the end."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(_ELLIPSIS)]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + _ELLIPSIS


def headline(alert: Alert) -> str:
    """The headline on one line: the title, else the URL, else ``(untitled)``."""
    return one_line(alert.item.title) or one_line(alert.item.url) or "(untitled)"


def email_subject(alert: Alert) -> str:
    """``[wirewatch] <rule id>: <headline>``, one line, at most :data:`SUBJECT_MAX` chars.

    A follow-up or update answers the first alert: ``Re: `` and the first headline, so
    mail clients that thread by subject (as well as by ``References``) keep them together.
    """
    if alert.thread_id:
        first = one_line(alert.thread_title) or headline(alert)
        return truncate(f"Re: [wirewatch] {one_line(alert.rule_id)}: {first}", SUBJECT_MAX)
    return truncate(f"[wirewatch] {one_line(alert.rule_id)}: {headline(alert)}", SUBJECT_MAX)


_KIND_LABEL = {"follow_up": "Follow-up", "update": "Update"}


def why_again(alert: Alert) -> str:
    """``Follow-up: <reason>`` / ``Update: <reason>`` for a follow-up, else empty."""
    label = _KIND_LABEL.get(alert.kind)
    return f"{label}: {one_line(alert.reason)}" if label else ""


def why_line(alert: Alert) -> str:
    """The query clauses that held, ``; ``-separated (empty when none were recorded).

    Why: an alert raised by ``about:`` clauses alone has no matched terms to show; its
    clauses, with the item's similarity to each, are the only reason a reader gets."""
    return truncate(one_line("; ".join(alert.explain)), WHY_MAX)


def story_line(alert: Alert) -> str:
    """``<id>, first seen <time> on <outlet>, <n> outlets, <n> items`` (empty: no story)."""
    view = alert.story_view
    if view is None:
        return ""
    first = datetime.fromtimestamp(view.first_seen, UTC).isoformat(timespec="seconds")
    return (
        f"{view.id}, first seen {first} on {view.first_outlet}, "
        f"{view.outlet_count} outlet(s), {view.items} item(s)"
    )


def entities_by_label(alert: Alert) -> dict[str, list[str]]:
    """Entity texts grouped by label, each text once, in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for entity in alert.entities:
        texts = groups.setdefault(entity.label, [])
        if entity.text not in texts:
            texts.append(entity.text)
    return groups


def feed_line(alert: Alert) -> str:
    """The feed as ``name (url)``, or the URL alone when it has no other name."""
    item = alert.item
    if item.feed_name and item.feed_name != item.feed_url:
        return f"{item.feed_name} ({item.feed_url})"
    return item.feed_url


def _published(alert: Alert) -> str:
    published = alert.item.published
    return published.isoformat() if published else "unknown"


def why_matched(term: MatchedTerm) -> str:
    """One matched term explained: ``'recall*' in title at 5-12: 'recalls'``."""
    return f"{term.term!r} in {term.field} at {term.start}-{term.end}: {term.text!r}"


def email_text(alert: Alert) -> str:
    """The text/plain part: the item, its entities and why the rule matched."""
    item = alert.item
    lines = [
        one_line(item.title) or "(untitled)",
        item.url,
        "",
        *([why_again(alert), ""] if why_again(alert) else []),
        f"Rule:      {alert.rule_id}",
        f"Query:     {alert.query}",
        *([f"Why:       {why_line(alert)}"] if why_line(alert) else []),
        f"Feed:      {feed_line(alert)}",
        f"Published: {_published(alert)}",
    ]
    if story_line(alert):
        lines.append(f"Story:     {story_line(alert)}")
    if item.summary:
        lines += ["", item.summary.strip()]
    groups = entities_by_label(alert)
    if groups:
        lines += ["", "Entities:"]
        lines += [f"  {label}: {', '.join(texts)}" for label, texts in groups.items()]
    if alert.matched:
        lines += ["", "Matched:"]
        lines += [f"  {why_matched(term)}" for term in alert.matched]
    lines += ["", f"Alert {alert.id}, created {alert.created.isoformat()}"]
    return "\n".join(lines) + "\n"


def matched_line(alert: Alert) -> str:
    """The matched terms in one line: ``recalls (recall*), Acme (acme)``, each once."""
    seen: list[str] = []
    for term in alert.matched:
        shown = one_line(term.text) or term.term
        label = shown if shown.casefold() == term.term.casefold() else f"{shown} ({term.term})"
        if label not in seen:
            seen.append(label)
    return ", ".join(seen)


def _spans(text: str, terms: Iterable[MatchedTerm]) -> list[tuple[int, int]]:
    """Usable, non-overlapping spans of ``text``, in order."""
    spans = sorted(
        (term.start, term.end)
        for term in terms
        if 0 <= term.start < term.end <= len(text)
        and (not term.text or text[term.start : term.end].casefold() == term.text.casefold())
    )
    kept: list[tuple[int, int]] = []
    for start, end in spans:
        if kept and start < kept[-1][1]:
            if end > kept[-1][1]:  # overlapping matches: one longer highlight
                kept[-1] = (kept[-1][0], end)
            continue
        kept.append((start, end))
    return kept


def highlight(text: str, terms: Iterable[MatchedTerm]) -> str:
    """``text`` HTML-escaped, with each matched span wrapped in ``<mark>``."""
    parts: list[str] = []
    position = 0
    for start, end in _spans(text, terms):
        parts.append(escape(text[position:start]))
        parts.append(f"<mark>{escape(text[start:end])}</mark>")
        position = end
    parts.append(escape(text[position:]))
    return "".join(parts)


def safe_href(url: str) -> str | None:
    """``url`` escaped for an ``href`` attribute, or None unless it is http(s)."""
    return escape(url) if urlsplit(url).scheme in ("http", "https") else None


def email_html(alert: Alert) -> str:
    """The text/html part: escaped feed text, matched terms in ``<mark>``, a link."""
    item = alert.item
    in_title = [term for term in alert.matched if term.field == "title"]
    in_summary = [term for term in alert.matched if term.field == "summary"]
    title = highlight(item.title, in_title) or "(untitled)"
    href = safe_href(item.url)
    heading = f'<a href="{href}">{title}</a>' if href else title
    rows = [
        ("Rule", escape(alert.rule_id)),
        ("Query", f"<code>{escape(alert.query)}</code>"),
        ("Feed", escape(feed_line(alert))),
        ("Published", escape(_published(alert))),
    ]
    if why_line(alert):
        rows.insert(2, ("Why", escape(why_line(alert))))
    if story_line(alert):
        rows.append(("Story", escape(story_line(alert))))
    if why_again(alert):
        rows.insert(0, (_KIND_LABEL[alert.kind], escape(one_line(alert.reason))))
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head><body>',
        f"<h2>{heading}</h2>",
        "<table>",
        *(f"<tr><th align=left>{name}</th><td>{value}</td></tr>" for name, value in rows),
        "</table>",
    ]
    if item.summary:
        out.append(f"<p>{highlight(item.summary, in_summary)}</p>")
    groups = entities_by_label(alert)
    if groups:
        out.append("<h3>Entities</h3><ul>")
        out += [
            f"<li><b>{escape(label)}</b>: {escape(', '.join(texts))}</li>"
            for label, texts in groups.items()
        ]
        out.append("</ul>")
    if alert.matched:
        out.append("<h3>Why it matched</h3><ul>")
        out += [f"<li>{escape(why_matched(term))}</li>" for term in alert.matched]
        out.append("</ul>")
    if href:
        out.append(f'<p><a href="{href}">Read the story</a></p>')
    out.append(f"<p><small>Alert {escape(alert.id)}</small></p></body></html>")
    return "\n".join(out) + "\n"
