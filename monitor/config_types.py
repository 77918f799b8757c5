"""Small value types used in the config: durations (``15m``) and rates (``10/h``).

Both accept what a person writes in YAML and validate to plain numbers, so the rest of
the code never parses strings. ``Seconds`` is a float of seconds; ``Rate`` is a count
per window of seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_duration(value: Any) -> float:
    """``90`` / ``"90s"`` / ``"15m"`` / ``"2h"`` / ``"1d"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or e.g. '15m', '2h', '1d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (write e.g. '30s', '15m', '2h', '1d')")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` per ``window_s`` seconds."""

    count: int
    window_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.window_s:g}s"


def parse_rate(value: Any) -> Rate:
    """``"10/h"``, ``"3/15m"``, ``"100/1d"`` → :class:`Rate`."""
    if isinstance(value, Rate):
        return value
    count, sep, window = str(value).partition("/")
    if not sep or not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"not a rate: {value!r} (write e.g. '10/h' or '3/15m')")
    window = window.strip()
    seconds = parse_duration(f"1{window}" if window in _UNITS else window)
    return Rate(int(count), seconds)


RateLimit = Annotated[Rate, BeforeValidator(parse_rate)]


def http_url_problem(url: str) -> str | None:
    """Why an http(s) URL can never be fetched (no host, a space, a port out of range),
    or None. Said at load time: at poll or send time it would look like a network fault
    and be retried for ever."""
    from urllib.parse import urlsplit

    if any(ch.isspace() for ch in url):
        return "the URL holds a space"
    parts = urlsplit(url)
    if not parts.hostname:
        return "the URL has no host"
    try:
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError:
        return "the URL's port is not a number from 0 to 65535"
    return None
