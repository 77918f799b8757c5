"""Feed discovery: the feeds an HTML page advertises with ``<link rel="alternate">``.

Role: when a configured URL turns out to be a web page, find the feed the site publishes
so the poller can fetch that instead (and say so in the log, ``feed_discovered``).

Inputs: the page as bytes, its URL (relative ``href`` values resolve against it, or
against the page's ``<base href>``) and optionally the response's Content-Type (for its
charset). Output: absolute feed URLs, best first, without duplicates.

What counts: ``<link>`` elements whose ``rel`` has the token ``alternate`` (any case,
among other tokens) and whose ``type`` is RSS (``application/rss+xml``), Atom
(``application/atom+xml``), RDF (``application/rdf+xml``) or JSON Feed
(``application/feed+json``, and the older ``application/json``). Order: as in the page,
except that comment feeds go last — the site's main feed is what a newsroom means.

Invariants:

- pure (no I/O) and never raises on hostile markup; reads at most the first
  :data:`MAX_SCAN_BYTES` of the page (``<link>`` belongs in ``<head>``);
- only ``http``/``https`` results, plus ``file`` when the page itself is a ``file:``
  URL: a web page must not point the poller at local files or ``javascript:``.

Uses the standard library's ``html.parser``, which tolerates broken markup; no new
dependency.
"""

from __future__ import annotations

import contextlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

MAX_SCAN_BYTES = 512 * 1024
FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/json",
    }
)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, str]] = []  # (href, title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("link", "base"):
            return
        values = {name.lower(): (value or "").strip() for name, value in attrs}
        href = values.get("href", "")
        if not href:
            return
        if tag == "base":
            if self.base is None:
                self.base = href
            return
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").lower().split(";")[0].strip()
        if "alternate" in rels and kind in FEED_TYPES:
            self.links.append((href, values.get("title", "")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def _decode(html: bytes, content_type: str | None) -> str:
    head = html[:MAX_SCAN_BYTES]
    match = _CHARSET.search(content_type or "")
    meta = _META_CHARSET.search(head[:4096])
    for charset in (
        match.group(1) if match else None,
        meta.group(1).decode("ascii") if meta else None,
        "utf-8",
    ):
        if not charset:
            continue
        try:
            return head.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name
            continue
    return head.decode("utf-8", errors="replace")  # pragma: no cover - utf-8 is known


def discover_feeds(html: bytes, base_url: str, content_type: str | None = None) -> list[str]:
    """Absolute URLs of the feeds ``html`` advertises, best first (maybe none)."""
    collector = _LinkCollector()
    # html.parser is lenient, but some malformed declarations still raise: keep the
    # links found up to there.
    with contextlib.suppress(Exception):
        collector.feed(_decode(html, content_type))
        collector.close()
    base = urljoin(base_url, collector.base) if collector.base else base_url
    allowed = {"http", "https"}
    if urlsplit(base_url).scheme.lower() == "file":
        allowed.add("file")
    found: list[tuple[bool, str]] = []
    seen: set[str] = set()
    for href, title in collector.links:
        url = urljoin(base, href)
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            continue
        if scheme not in allowed or url in seen:
            continue
        seen.add(url)
        comments = "comment" in title.lower() or "comment" in href.lower()
        found.append((comments, url))
    # sorted() is stable: page order within main feeds and within comment feeds.
    return [url for _comments, url in sorted(found, key=lambda pair: pair[0])]
