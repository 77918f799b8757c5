"""Feed bytes → our own values. The only module that touches feedparser.

Role: turn a fetched body into a :class:`ParsedFeed` of normalised
:class:`~monitor.items.Item` values, or raise :class:`~monitor.poll_errors.FeedParseError`.

Inputs: the body as bytes (never a URL: feedparser must not do I/O), the response's
content type (it carries the charset), the URL the body came from (relative links resolve
against it) and a :class:`FeedRef` naming the configured feed.

Outputs: a frozen :class:`ParsedFeed` (items, the feed's title, its own polling hint
``ttl_s`` from RSS ``<ttl>`` or the syndication module, and a ``warning`` when the feed
was read despite a problem). No ``FeedParserDict`` escapes this module.

Invariants:

- :func:`parse_feed` is a plain module-level function with picklable arguments and
  result, so the poller can run it in a parse process (:mod:`monitor.parse_pool`;
  feedparser is pure Python and CPU-bound, it must not stall the event loop).
- A body that is not a feed at all (garbage, XML broken before the first entry, an
  empty body) raises ``FeedParseError``; an HTML page raises its subclass
  :class:`~monitor.poll_errors.NotAFeed` carrying the feeds the page advertises
  (:mod:`monitor.discover`). A feed that is malformed but yields entries is returned
  with ``warning`` set to feedparser's ``bozo`` reason.
- Charsets: the HTTP ``charset`` goes to feedparser, which falls back to the XML
  declaration, UTF-8 and windows-1252 when the label is wrong (a warning, not an
  error). One common lie is corrected first: a body labelled ISO-8859-1/ASCII that is
  valid, non-ASCII UTF-8 is read as UTF-8 (Apache's old default label).
- feedparser's HTML sanitizer and its rewriting of relative links inside HTML content
  are off: every HTML field is reduced to plain text here (:func:`~monitor.normalise.html_to_text`,
  script and style dropped with their content) and escaped wherever it is shown again, so
  cleaning markup we then throw away only cost time — half of feedparser's time on
  news feeds, whose descriptions are escaped HTML (``bench/README.md``).
- Hostile DTDs are defused before feedparser runs (:mod:`monitor.parse_guard`): entity
  expansion is bounded, so a "billion laughs" or "quadratic blowup" costs milliseconds.
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
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from monitor.config import FeedConfig
from monitor.discover import discover_feeds
from monitor.items import Item
from monitor.normalise import canonical_url, html_to_text, item_key, published_utc
from monitor.parse_guard import defuse_entities
from monitor.poll_errors import FeedParseError, NotAFeed

# A summary is matched against rules and read in alerts, not archived: a feed that puts
# whole articles in its summaries must not make queue payloads huge.
MAX_SUMMARY_CHARS = 10_000
MAX_TITLE_CHARS = 1_000

_BENIGN_BOZO = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)
_HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")
# Labels servers put on UTF-8 bodies by default; see _honest_content_type.
_DEFAULT_LABELS = frozenset({"iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"})
_CHARSET_PARAM = re.compile(r";\s*charset\s*=\s*[\"']?([\w.:-]+)[\"']?", re.IGNORECASE)
# RSS 1.0 syndication module: <sy:updatePeriod> in seconds.
_SY_PERIODS = {"hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0}
_SY_PERIODS |= {"monthly": 2_592_000.0, "yearly": 31_536_000.0}


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
    ttl_s: float | None = None  # the feed's own "poll me at most this often" (RSS <ttl>)
    hub_url: str | None = None  # WebSub: the hub the feed advertises (rel="hub")
    self_url: str | None = None  # WebSub: the feed's own URL, the topic (rel="self")
    # Set when only some entries were parsed (monitor.parse_partial): the key of every
    # entry in the body, so all of them are marked seen.
    body_keys: tuple[str, ...] = ()
    # Set by the poller when it scanned the body: (item key, digest of the entry's bytes)
    # for every entry, so an entry whose bytes did not change is not parsed next time.
    entry_revisions: tuple[tuple[str, str], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """The item key of every entry in the body, parsed or not."""
        return self.body_keys or tuple(item.key for item in self.items)


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
    ttl_s: float | None = None
    hub_url: str | None = None
    self_url: str | None = None


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
        raw = _read_json_feed(body, content_type)
    else:
        raw = _read_xml_feed(body, content_type, base_url)
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
    return ParsedFeed(
        title=title,
        items=tuple(items),
        skipped=skipped,
        warning=warning,
        ttl_s=raw.ttl_s,
        hub_url=_absolute(raw.hub_url, base_url),
        self_url=_absolute(raw.self_url, base_url),
    )


def _absolute(url: str | None, base_url: str) -> str | None:
    """A WebSub link made absolute; only http(s) links count."""
    url = urljoin(base_url, url) if url else None
    return url if url and _is_web_url(url) else None


def _feedparser(body: bytes, headers: Mapping[str, str]) -> Any:
    return feedparser.parse(
        io.BytesIO(body),
        response_headers=dict(headers),
        sanitize_html=False,  # see the module docstring: we keep text, not HTML
        resolve_relative_uris=False,
    )


_CHAR_REF = re.compile(rb"&#(x[0-9a-fA-F]{1,8}|[0-9]{1,10});")


def _encodable_charrefs(body: bytes) -> bytes:
    """``body`` with character references to surrogates or past U+10FFFF as U+FFFD."""

    def fix(match: re.Match[bytes]) -> bytes:
        ref = match.group(1)
        code = int(ref[1:], 16) if ref[:1] in (b"x", b"X") else int(ref)
        return b"&#xFFFD;" if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else match.group()

    return _CHAR_REF.sub(fix, body)


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") or "json" in (content_type or "")


def _read_xml_feed(body: bytes, content_type: str | None, base_url: str) -> _RawFeed:
    safe_body, guard_warning = defuse_entities(body)
    content_type, label_warning = _honest_content_type(content_type, safe_body)
    headers = {"content-type": content_type} if content_type else {}
    # A file-like object, so feedparser can never mistake the body for a URL or a path.
    # No content-location: GUIDs must stay as written (feedparser would resolve them).
    try:
        try:
            result = _feedparser(safe_body, headers)
        except UnicodeEncodeError:
            # A character reference to a surrogate ("&#55296;"): feedparser's loose
            # parser cannot encode it. Once more with such references made U+FFFD.
            result = _feedparser(_encodable_charrefs(safe_body), headers)
    except Exception as exc:  # feedparser bugs on hostile input; never crash the poller
        raise FeedParseError(f"feed parser failed: {exc!r}") from exc
    bozo = _bozo_reason(result) if result.get("bozo") else None
    # A wrong Content-Type or charset label is the server's sloppiness, not broken XML.
    broken = bool(bozo) and not isinstance(result.get("bozo_exception"), _BENIGN_BOZO)
    entries = list(result.get("entries") or [])
    if not entries:
        html_type = "html" in (content_type or "").lower() and not result.get("version")
        if html_type or b"<html" in body[:4096].lower():
            raise _not_a_feed(body, base_url, content_type)
        if broken:
            raise FeedParseError(f"malformed feed: {bozo}")
        if not result.get("version"):
            raise FeedParseError("not a feed: no RSS, Atom or RDF root element")
    meta = result.get("feed") or {}
    title = html_to_text(str(meta.get("title") or ""))
    language = meta.get("language") or None
    warning = "; ".join(w for w in (guard_warning, label_warning, bozo) if w) or None
    return _RawFeed(
        title,
        language,
        [_from_feedparser(raw) for raw in entries],
        warning,
        broken,
        _ttl_seconds(meta),
        *_websub_links(meta.get("links")),
    )


def _websub_links(links: object) -> tuple[str | None, str | None]:
    """The first ``rel="hub"`` and ``rel="self"`` hrefs among the feed's links."""
    found: dict[str, str] = {}
    for link in links if isinstance(links, list) else ():
        rel, href = link.get("rel"), link.get("href")
        if rel in ("hub", "self") and isinstance(href, str) and href.strip():
            found.setdefault(rel, href.strip())
    return found.get("hub"), found.get("self")


def _not_a_feed(body: bytes, base_url: str, content_type: str | None) -> NotAFeed:
    urls = tuple(discover_feeds(body, base_url, content_type))
    if not urls:
        return NotAFeed("not a feed: got an HTML page that advertises no feed")
    more = f" (and {len(urls) - 1} more)" if len(urls) > 1 else ""
    return NotAFeed(f"not a feed: got an HTML page; it advertises {urls[0]}{more}", urls)


def _honest_content_type(content_type: str | None, body: bytes) -> tuple[str | None, str | None]:
    """Drop a default Latin label from a body that is really UTF-8 (see module doc)."""
    match = _CHARSET_PARAM.search(content_type or "")
    if content_type is None or match is None or match.group(1).lower() not in _DEFAULT_LABELS:
        return content_type, None
    if body.isascii():
        return content_type, None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return content_type, None
    unlabelled = content_type[: match.start()] + content_type[match.end() :]
    return unlabelled, f"charset label {match.group(1)!r} ignored: the body is UTF-8"


def _ttl_seconds(meta: Mapping[str, Any]) -> float | None:
    """RSS ``<ttl>`` (minutes), else ``<sy:updatePeriod>``/``<sy:updateFrequency>``."""
    minutes = _positive(meta.get("ttl"))
    if minutes is not None:
        return minutes * 60
    period = _SY_PERIODS.get(str(meta.get("sy_updateperiod") or "").strip().lower())
    if period is None:
        return None
    return period / (_positive(meta.get("sy_updatefrequency")) or 1)


def _positive(value: object) -> float | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


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
    link = _str_or_none(raw.get("link"))
    if link and raw.get("guidislink") and not _is_web_url(link):
        link = None  # feedparser took a GUID like "story-3" for the permalink
    return _Entry(
        guid=_str_or_none(raw.get("id")),
        link=link,
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


def _is_web_url(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _same_scheme(url: str, base_url: str) -> bool:
    return base_url[:5].lower() == "file:" and url[:5].lower() == "file:"


def _str_or_none(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _read_json_feed(body: bytes, content_type: str | None) -> _RawFeed:
    warning = None
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        # JSON Feed must be UTF-8; read a mislabelled one rather than lose it.
        match = _CHARSET_PARAM.search(content_type or "")
        charset = match.group(1) if match else "windows-1252"
        try:
            data = json.loads(body.decode(charset, errors="replace"))
        except (LookupError, json.JSONDecodeError) as exc:
            raise FeedParseError(f"not a feed: invalid JSON ({exc})") from exc
        warning = f"JSON Feed is not UTF-8; read as {charset}"
    except json.JSONDecodeError as exc:
        raise FeedParseError(f"not a feed: invalid JSON ({exc})") from exc
    except RecursionError as exc:
        raise FeedParseError("not a feed: JSON nested too deeply") from exc
    if not isinstance(data, dict) or "jsonfeed.org" not in str(data.get("version", "")):
        raise FeedParseError("not a feed: JSON without a jsonfeed.org version")
    raw_items = data.get("items")
    if not isinstance(raw_items, list):
        raise FeedParseError("malformed JSON Feed: 'items' is not a list")
    title = " ".join(str(data.get("title") or "").split())
    language = data.get("language") if isinstance(data.get("language"), str) else None
    hubs = data.get("hubs")
    hubs = hubs if isinstance(hubs, list) else []
    websub = (h for h in hubs if isinstance(h, dict) and str(h.get("type")).lower() == "websub")
    hub = next((h.get("url") for h in websub), None)
    self_url = data.get("feed_url")
    return _RawFeed(
        title,
        language,
        list(_json_entries(raw_items)),
        warning,
        hub_url=hub if isinstance(hub, str) else None,
        self_url=self_url if isinstance(self_url, str) else None,
    )


def _json_entries(raw_items: Iterable[Any]) -> Iterable[_Entry]:
    for raw in raw_items:
        if not isinstance(raw, dict):
            yield _Entry(None, None, "", "", None)  # counted as skipped downstream
            continue
        summary = _json_text(raw.get("summary"))
        if not summary and raw.get("content_text"):
            summary = _json_text(raw["content_text"])
        elif not summary:
            summary = html_to_text(_json_text(raw.get("content_html")))
        yield _Entry(
            guid=_str_or_none(_json_text(raw.get("id")) or None),
            link=_str_or_none(raw.get("url")),
            title=" ".join(_json_text(raw.get("title")).split()),
            summary=" ".join(summary.split()),
            published=_iso_struct(raw.get("date_published") or raw.get("date_modified")),
        )


def _json_text(value: object) -> str:
    """A JSON Feed field as text: a string as is, a number written out, a list of strings
    joined; anything else (an object, a list of objects) is not text: "" (its repr once
    became a two-word title that swallowed later stories)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return " ".join(value)
    return ""


def _iso_struct(value: object) -> time.struct_time | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).utctimetuple()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(entry: _Entry) -> _Entry:
    """Lone UTF-16 surrogates (a JSON ``\\ud800`` escape, an XML ``&#55296;``) cannot be
    encoded, so hashing or storing the item failed and with it every poll of the feed:
    each becomes U+FFFD, the replacement character."""
    fields = (entry.guid, entry.link, entry.title, entry.summary)
    if not any(text and _SURROGATE.search(text) for text in fields):
        return entry
    guid, link, title, summary = (
        _SURROGATE.sub("\ufffd", text) if text else text for text in fields
    )
    return _Entry(guid, link, title or "", summary or "", entry.published)


def _to_item(
    entry: _Entry,
    feed: FeedRef,
    feed_name: str,
    language: str | None,
    base_url: str,
    now: datetime,
) -> Item | None:
    entry = _without_surrogates(entry)
    url = urljoin(base_url, entry.link) if entry.link else ""
    # Only a web address is a link (a "urn:uuid:…" Atom id is not); a local test feed
    # (file: base URL) may link to local files.
    url = canonical_url(url) if _is_web_url(url) or _same_scheme(url, base_url) else ""
    title = entry.title or entry.summary[:120]
    if not (entry.guid or url or title):
        return None
    return Item(
        key=item_key(feed.url, entry.guid, url, title),
        feed_url=feed.url,
        feed_name=feed_name,
        url=url,
        title=title[:MAX_TITLE_CHARS].rstrip(),
        summary=entry.summary[:MAX_SUMMARY_CHARS].rstrip(),
        guid=entry.guid,
        published=published_utc(entry.published, now),
        tags=feed.tags,
        language=language,
    )
