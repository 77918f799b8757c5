"""``wirewatch status``: every feed's health, as a table or as JSON lines.

Reads the Redis the service uses (``redis.url`` or ``$REDIS_URL``, else the embedded
Redis of a running ``wirewatch run``): the feed state hashes, the shared schedule and
the poller heartbeats. Lists the configured feeds, then any feed the pollers schedule
that this config does not name. Read-only.

Columns: feed, state (healthy / degraded / failing / gone; ``unknown`` before the first
poll, ``disabled`` when switched off), last success, consecutive failures, last error,
new items in the last 24 h, next poll. ``--json`` prints one object per feed and line,
with times in ISO 8601 UTC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import click
import redis

from monitor.cli_alerts import connect
from monitor.config import Config
from monitor.health import FeedStatus, read_statuses
from monitor.keys import Keys
from monitor.liveness import pollers_alive

_HEADERS = ("FEED", "STATE", "LAST SUCCESS", "FAILS", "LAST ERROR", "ITEMS/DAY", "NEXT POLL")
_WIDTHS = (32, 8, 12, 5, 40, 9, 10)


def _ago(then: float | None, now: float) -> str:
    return "never" if then is None else f"{_span(now - then)} ago"


def _until(when: float | None, now: float) -> str:
    if when is None:
        return "-"
    return "due" if when <= now else f"in {_span(when - now)}"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(rows: Sequence[FeedStatus], now: float) -> list[str]:
    """The table lines (header first), columns padded to fixed widths."""
    lines = [_line(_HEADERS)]
    for row in rows:
        cells = (
            row.feed,
            row.state,
            _ago(row.last_success, now),
            str(row.failures),
            row.last_error or "-",
            str(row.items_per_day),
            _until(row.next_poll, now),
        )
        lines.append(_line(cells))
    return lines


def _line(cells: Sequence[str]) -> str:
    padded = [_cut(cell, width).ljust(width) for cell, width in zip(cells, _WIDTHS, strict=True)]
    return "  ".join(padded).rstrip()


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    """Add ``status`` to ``cli``; ``load()`` returns the validated config."""

    @cli.command()
    @click.option("--json", "as_json", is_flag=True, help="one JSON object per feed and line")
    def status(as_json: bool) -> None:
        """Every feed's health: state, last success, failures, last error, next poll."""
        config = load()
        keys = Keys(config.redis.prefix)
        client = connect(config)
        try:
            now = time.time()
            rows = read_statuses(client, keys, config.feeds, now=now)
            pollers = len(pollers_alive(client, keys))
        except redis.RedisError as exc:
            raise click.ClickException(f"cannot read Redis: {exc}") from exc
        finally:
            client.close()
        if as_json:
            for row in rows:
                click.echo(json.dumps(row.to_json()))
            return
        for line in render_table(rows, now):
            click.echo(line)
        broken = sum(row.state in ("failing", "gone") for row in rows)
        click.echo(f"\n{len(rows)} feeds, {broken} failing or gone; {pollers} pollers alive")
