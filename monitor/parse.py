"""Feed bytes → our own values. The only module that touches feedparser.

Role: turn a fetched body into a :class:`ParsedFeed` of normalised
:class:`~monitor.items.Item` values, or raise :class:`~monitor.poll_errors.FeedParseError`.

Inputs: the body as bytes (never a URL: feedparser must not do I/O), the response's
content type (it carries the charset), the URL the body came from (relative links resolve
against it) and a :class:`FeedRef` naming the configured feed.

Outputs: a frozen :class:`ParsedFeed`. No ``FeedParserDict`` escapes this module.

Invariants:

- :func:`parse_feed` is a plain module-level function with picklable arguments and
  result, so the poller can run it in a ``ProcessPoolExecutor`` (feedparser is pure
  Python and CPU-bound; it must not stall the event loop).
- A body that is not a feed at all (an HTML page, garbage, XML broken before the first
  entry, an empty body) raises ``FeedParseError``; a feed that is malformed but yields
  entries is returned with ``warning`` set to feedparser's ``bozo`` reason.
- Bad entries are skipped one at a time and counted in ``skipped``; so are repeats of an
  item key already seen earlier in the same body.
- JSON Feed (jsonfeed.org) bodies are read here too, without feedparser (feedparser 6.0
  does not know the format).
- Item keys use the *configured* feed URL and the raw GUID, never the final URL after
  redirects, so keys stay stable when a publisher moves the feed.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from monitor.config import FeedConfig
from monitor.items import Item
from monitor.normalise import canonical_url, html_to_text, item_key, published_utc
from monitor.poll_errors import FeedParseError

# A summary is matched against rules and read in alerts, not archived: a feed that puts
# whole articles in its summaries must not make queue payloads huge.
MAX_SUMMARY_CHARS = 10_000
MAX_TITLE_CHARS = 1_000

_BENIGN_BOZO = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)
_HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")


@dataclass(frozen=True, slots=True)
class FeedRef:
    """What the parser needs to know about the configured feed (picklable, small)."""

    url: str
    name: str = ""
    tags: tuple[str, ...] = ()
    language: str | None = None

    @classmethod
    def from_config(cls, feed: FeedConfig) -> FeedRef:
        return cls(url=feed.url, name=feed.name, tags=tuple(feed.tags), language=feed.language)


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str
    items: tuple[Item, ...]
    skipped: int = 0
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    """One entry in a format-neutral shape, before normalisation."""

    guid: str | None
    link: str | None
    title: str
    summary: str
    published: time.struct_time | None


@dataclass(frozen=True, slots=True)
class _RawFeed:
    """A body read by feedparser or as JSON, before its entries are normalised."""

    title: str
    language: str | None
    entries: list[_Entry]
    warning: str | None = None
    broken: bool = False  # the XML itself is broken (not just mislabelled)


def parse_feed(
    body: bytes,
    *,
    feed: FeedRef,
    content_type: str | None,
    base_url: str,
    now: datetime | None = None,
) -> ParsedFeed:
    """Parse ``body``; see the module docstring for what raises and what is skipped."""
    now = now or datetime.now(UTC)
    if not body.strip():
        raise FeedParseError("empty response body")
    if _looks_like_json(body, content_type):
        raw = _read_json_feed(body)
    else:
        raw = _read_xml_feed(body, content_type)
    title, language, warning = raw.title, raw.language, raw.warning
    feed_name = feed.name or title or feed.url
    items: list[Item] = []
    keys: set[str] = set()
    skipped = 0
    for entry in raw.entries:
        try:
            item = _to_item(entry, feed, feed_name, feed.language or language, base_url, now)
        except Exception:
            # One odd entry (a bad date type, a weird link) must not cost the others.
            item = None
        if item is None or item.key in keys:
            skipped += 1
            continue
        keys.add(item.key)
        items.append(item)
    if raw.broken and not items:
        # Broken XML that yielded only unusable fragments is not a feed we can read.
        raise FeedParseError(f"malformed feed: {warning}")
    return ParsedFeed(title=title, items=tuple(items), skipped=skipped, warning=warning)


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") or "json" in (content_type or "")


def _read_xml_feed(body: bytes, content_type: str | None) -> _RawFeed:
    headers = {"content-type": content_type} if content_type else {}
    # A file-like object, so feedparser can never mistake the body for a URL or a path.
    # No content-location: GUIDs must stay as written (feedparser would resolve them).
    try:
        result = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:  # feedparser bugs on hostile input; never crash the poller
        raise FeedParseError(f"feed parser failed: {exc!r}") from exc
    bozo = _bozo_reason(result) if result.get("bozo") else None
    # A wrong Content-Type or charset label is the server's sloppiness, not broken XML.
    broken = bool(bozo) and not isinstance(result.get("bozo_exception"), _BENIGN_BOZO)
    entries = list(result.get("entries") or [])
    if not entries:
        html_type = "html" in (content_type or "").lower() and not result.get("version")
        if html_type or b"<html" in body[:4096].lower():
            raise FeedParseError("not a feed: got an HTML page")
        if broken:
            raise FeedParseError(f"malformed feed: {bozo}")
        if not result.get("version"):
            raise FeedParseError("not a feed: no RSS, Atom or RDF root element")
    meta = result.get("feed") or {}
    title = html_to_text(str(meta.get("title") or ""))
    language = meta.get("language") or None
    return _RawFeed(title, language, [_from_feedparser(raw) for raw in entries], bozo, broken)


def _bozo_reason(result: Mapping[str, Any]) -> str:
    exc = result.get("bozo_exception")
    message = str(exc) if exc is not None else ""
    name = type(exc).__name__ if exc is not None else "error"
    return f"{name}: {message}" if message else name


def _from_feedparser(raw: Mapping[str, Any]) -> _Entry:
    summary = _text(raw.get("summary"), raw.get("summary_detail"))
    if not summary:
        for content in raw.get("content") or ():
            summary = _text(content.get("value"), content)
            if summary:
                break
    published = raw.get("published_parsed") or raw.get("updated_parsed")
    return _Entry(
        guid=_str_or_none(raw.get("id")),
        link=_str_or_none(raw.get("link")),
        title=_text(raw.get("title"), raw.get("title_detail")),
        summary=summary,
        published=published if isinstance(published, time.struct_time) else None,
    )


def _text(value: object, detail: object) -> str:
    if not isinstance(value, str):
        return ""
    kind = detail.get("type", "") if isinstance(detail, Mapping) else "text/html"
    if kind in _HTML_TYPES or not kind:
        return html_to_text(value)
    return " ".join(value.split())


def _str_or_none(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _read_json_feed(body: bytes) -> _RawFeed:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedParseError(f"not a feed: invalid JSON ({exc})") from exc
    if not isinstance(data, dict) or "jsonfeed.org" not in str(data.get("version", "")):
        raise FeedParseError("not a feed: JSON without a jsonfeed.org version")
    raw_items = data.get("items")
    if not isinstance(raw_items, list):
        raise FeedParseError("malformed JSON Feed: 'items' is not a list")
    title = " ".join(str(data.get("title") or "").split())
    language = data.get("language") if isinstance(data.get("language"), str) else None
    return _RawFeed(title, language, list(_json_entries(raw_items)))


def _json_entries(raw_items: Iterable[Any]) -> Iterable[_Entry]:
    for raw in raw_items:
        if not isinstance(raw, dict):
            yield _Entry(None, None, "", "", None)  # counted as skipped downstream
            continue
        summary = str(raw.get("summary") or "")
        if not summary and raw.get("content_text"):
            summary = str(raw["content_text"])
        elif not summary:
            summary = html_to_text(str(raw.get("content_html") or ""))
        yield _Entry(
            guid=_str_or_none(str(raw["id"]) if raw.get("id") is not None else None),
            link=_str_or_none(raw.get("url")),
            title=" ".join(str(raw.get("title") or "").split()),
            summary=" ".join(summary.split()),
            published=_iso_struct(raw.get("date_published") or raw.get("date_modified")),
        )


def _iso_struct(value: object) -> time.struct_time | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).utctimetuple()


def _to_item(
    entry: _Entry,
    feed: FeedRef,
    feed_name: str,
    language: str | None,
    base_url: str,
    now: datetime,
) -> Item | None:
    url = canonical_url(urljoin(base_url, entry.link)) if entry.link else ""
    title = entry.title or entry.summary[:120]
    if not (entry.guid or url or title):
        return None
    return Item(
        key=item_key(feed.url, entry.guid, url, title),
        feed_url=feed.url,
        feed_name=feed_name,
        url=url,
        title=title[:MAX_TITLE_CHARS],
        summary=entry.summary[:MAX_SUMMARY_CHARS],
        guid=entry.guid,
        published=published_utc(entry.published, now),
        tags=feed.tags,
        language=language,
    )
