"""Parse only the new entries of a changed body (runs in the parse process).

Role: the second half of "parse only what is new" (the first is
:mod:`monitor.entry_scan`). The poller cuts the body down to the entries the first-seen
filter did not know (:meth:`~monitor.entry_scan.EntryScan.cut`: the feed's header is
kept, so its title, ``<ttl>`` and WebSub links are read as before) and sends only that
small document here, with the item keys the scan expects from it and the keys of every
entry in the body. :func:`parse_partial` returns a :class:`~monitor.parse.ParsedFeed`
whose ``body_keys`` lists every entry's key, or ``None`` when the scan proved wrong.

Invariant — the scan is never trusted blindly: the keys of the items parsed from the cut
must be exactly the keys the scan expected. If they are not (an id the scan read
differently, an entry it missed next to the header, a cut that broke the XML), or the
cut does not parse, the answer is ``None`` and the poller parses the whole body, exactly
as without a scan. So a key the scan got wrong is never marked seen: it comes back as
"new" on every poll, is parsed, and sends the feed to the full parse — no item can be
lost to a mistaken scan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import datetime

from monitor.parse import FeedRef, ParsedFeed, parse_feed
from monitor.poll_errors import FeedParseError


def parse_partial(
    cut: bytes,
    *,
    expected: Collection[str],
    body_keys: tuple[str, ...],
    feed: FeedRef,
    content_type: str | None,
    base_url: str,
    now: datetime | None = None,
) -> ParsedFeed | None:
    """The entries of ``cut`` parsed, or ``None`` if they are not exactly the
    ``expected`` keys (see the module docstring)."""
    try:
        parsed = parse_feed(cut, feed=feed, content_type=content_type, base_url=base_url, now=now)
    except FeedParseError:
        return None
    if {item.key for item in parsed.items} != set(expected):
        return None
    return dataclasses.replace(parsed, body_keys=tuple(dict.fromkeys(body_keys)))
