"""Normalisation of feed values: canonical URLs, plain text, UTC times, item keys.

Role: the pure core that :mod:`monitor.parse` uses to turn one feed entry into an
:class:`~monitor.items.Item`. No I/O, no clock (``now`` is passed in), no feedparser.

Inputs and outputs:

- :func:`canonical_url` — any string → the canonical form of an http(s) URL: scheme and
  host lower-cased, default port dropped, fragment dropped, tracking parameters
  (``utm_*``, ``fbclid``, ``gclid``, ``mc_cid`` …) dropped, the query sorted and
  percent-encoding normalised (w3lib's ``canonicalize_url``). Anything that is not an
  absolute http(s) URL is returned stripped and otherwise unchanged.
- :func:`html_to_text` — an HTML fragment → plain text. Block boundaries (``<p>``,
  ``<br>``, ``<div>``, ``<li>``, headings …) become a single ``\\n``; other whitespace
  collapses to one space; ``<script>``/``<style>`` content is dropped; entities are
  decoded. The result has no blank lines and no leading/trailing whitespace.
- :func:`published_utc` — feedparser's UTC ``struct_time`` → an aware UTC ``datetime``.
- :func:`item_key` — a stable key per (feed, entry).

Invariants: :func:`canonical_url` is idempotent and ignores tracking parameters
(property-tested); :func:`item_key` depends only on its arguments.
"""

from __future__ import annotations

import re
import time
from calendar import timegm
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.html import remove_tags, remove_tags_with_content, replace_entities
from w3lib.url import canonicalize_url

from monitor.keys import digest

# Parameters that identify a campaign or a click, never the article. Lower-case names;
# matching is case-insensitive because senders are not consistent.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "ocid",
        "cmpid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ref_src",
        "smid",
    }
)
TRACKING_PREFIXES = ("utm_",)

# Future dates beyond this are a feed's clock or time-zone bug; see published_utc.
FUTURE_TOLERANCE = timedelta(days=1)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BLOCK_TAGS = re.compile(
    r"<\s*/?\s*(?:p|br|div|li|ul|ol|h[1-6]|tr|table|blockquote|pre|hr|section|article)\b[^>]*>",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[^\S\n]+")
_WHITESPACE = re.compile(r"\s+")


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """The canonical form of ``url`` (see the module docstring); idempotent."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # e.g. an unterminated IPv6 literal or a non-numeric port
        return url
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return url
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal: urlsplit stripped the brackets
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(name)
    ]
    rebuilt = urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))
    return str(canonicalize_url(rebuilt, keep_blank_values=True))


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: paragraphs on their own lines, no markup."""
    if not html:
        return ""
    text = remove_tags_with_content(html, which_ones=("script", "style"))
    # Newlines in HTML source are plain whitespace; only block tags break lines, and they
    # must become breaks before the tags go, so "<p>a</p><p>b</p>" is not "ab".
    text = _BLOCK_TAGS.sub("\n", _WHITESPACE.sub(" ", text))
    text = replace_entities(remove_tags(text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def published_utc(parsed: time.struct_time | None, now: datetime) -> datetime | None:
    """An aware UTC datetime from feedparser's UTC ``struct_time``.

    A date more than a day ahead of ``now`` is clamped to ``now``: the entry exists
    now, and a far-future date would otherwise sort it above everything for days.
    Up to a day ahead is kept as given (time-zone slop in honest feeds).
    Returns ``None`` when there is no date or it is out of range.
    """
    if parsed is None:
        return None
    try:
        when = datetime.fromtimestamp(timegm(parsed), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None
    if when > now + FUTURE_TOLERANCE:
        return now.astimezone(UTC)
    return when


def item_key(feed_url: str, guid: str | None, url: str | None, title: str | None) -> str:
    """A stable key for an entry of a feed.

    Prefers the GUID, then the canonical URL, then the title, each tagged with its kind
    so a GUID can never collide with a URL that happens to spell the same. Scoped to the
    feed: two feeds carrying the same GUID are two items (cross-feed duplicates are the
    workers' dedupe stage's job).
    """
    if guid and guid.strip():
        basis = f"guid:{guid.strip()}"
    elif url and url.strip():
        basis = f"url:{canonical_url(url)}"
    else:
        basis = f"title:{(title or '').strip()}"
    return digest(f"{feed_url}\n{basis}", 32)
