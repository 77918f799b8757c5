"""Pure readings of HTTP response headers that the scheduler cares about.

Role: turn header strings into numbers, with no I/O, so :mod:`monitor.fetch` stays a
thin shell and these rules are tested on their own.

- :func:`parse_retry_after` — ``Retry-After`` (delta-seconds or an HTTP date) → seconds
  to wait from ``now``.
- :func:`cache_max_age` — ``Cache-Control: max-age`` minus ``Age`` → seconds the
  response stays fresh; ``no-cache``/``no-store`` mean 0 (no freshness to honour).
- :func:`expires_at` — ``Expires`` → an absolute unix time. An invalid date (often
  ``0`` or ``-1``) means "already expired" per RFC 9111 and reads as ``None`` here, i.e.
  no hint. When both are present, ``max-age`` wins (RFC 9111 §5.3); the scheduler
  decides what to do with either.
- :func:`permanent_redirect` — the URL a chain of redirects permanently moved a feed to:
  the target of the leading run of 301/308 responses, so ``301 → 302 → 200`` stores the
  301's target, not the temporary one.

Invariants: every function returns ``None`` rather than raising on malformed input, and
never returns a negative number of seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

PERMANENT_REDIRECTS = frozenset({301, 308})
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_FRESHNESS = re.compile(r"(?:^|[,\s])no-(?:cache|store)\b", re.IGNORECASE)


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())


def cache_max_age(cache_control: str | None, age: str | None = None) -> float | None:
    """Seconds of freshness left from ``Cache-Control`` (and the ``Age`` header)."""
    if not cache_control:
        return None
    if _NO_FRESHNESS.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return None
    seconds = float(match.group(1))
    if age and age.strip().isdigit():
        seconds -= float(age.strip())
    return max(0.0, seconds)


def expires_at(expires: str | None) -> float | None:
    """The unix time of an ``Expires`` header; ``None`` when absent or invalid."""
    if not expires:
        return None
    when = _http_date(expires)
    return when.timestamp() if when is not None else None


def permanent_redirect(
    requested: str, hops: Sequence[tuple[int, str]], final_url: str
) -> str | None:
    """Where leading 301/308 redirects moved ``requested`` to, if anywhere.

    ``hops`` are the redirect responses in order, each as (status, URL it answered
    for); ``final_url`` is the URL of the response that ended the chain.
    """
    moved_to: str | None = None
    for index, (status, _url) in enumerate(hops):
        if status not in PERMANENT_REDIRECTS:
            break
        moved_to = hops[index + 1][1] if index + 1 < len(hops) else final_url
    return moved_to if moved_to and moved_to != requested else None
