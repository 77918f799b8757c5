"""``wirewatch backtest``: run rules over items already seen, or over a file, offline.

* ``--since 24h`` (the default): the items the workers processed in that time, as kept
  in the service's Redis with their entities and story; ``--rule ID`` for one rule
  (enabled or not), else every enabled rule.
* ``--items FILE.jsonl``: one item a line (``title``, ``summary``, ``url``, ``feed``,
  ``published``; ``guid`` optional) through exact dedupe, story assignment, entities
  and the rules, in memory: no Redis, nothing sent. ``feed`` is a feed URL or a name.

Output: per item its story and its matches (clauses and matched terms); ``--json``
prints one JSON object per item, one a line. Exit status 2 on an unknown rule or a bad
file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from monitor.config import Config
from monitor.config_types import parse_duration
from monitor.items import Item
from monitor.normalise import canonical_url, item_key

if TYPE_CHECKING:
    from workers.api import BacktestRow


def _published(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_items(path: Path) -> list[Item]:
    """The items of a JSON-lines file; a bad line is a usage error naming its number."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise click.UsageError(f"{path}:{number}: {exc}") from exc
        feed = str(data.get("feed") or "file")
        is_url = "://" in feed or feed.startswith("file:")
        feed_url = feed if is_url else f"urn:wirewatch:feed:{feed}"
        url = canonical_url(str(data["url"])) if data.get("url") else ""
        guid = str(data["guid"]) if data.get("guid") else None
        title = str(data.get("title") or "")
        items.append(
            Item(
                key=item_key(feed_url, guid, url, title),
                feed_url=feed_url,
                feed_name=feed,
                url=url,
                title=title,
                summary=str(data.get("summary") or ""),
                guid=guid,
                published=_published(data.get("published")),
            )
        )
    return items


def _show(rows: Iterable[BacktestRow], as_json: bool) -> None:
    items = matched = 0
    stories: set[str] = set()
    for row in rows:
        items += 1
        matched += len(row.matches)
        stories.add(row.story_id)
        if as_json:
            click.echo(json.dumps(row.to_json(), ensure_ascii=False))
            continue
        when = row.item.published.strftime("%Y-%m-%d %H:%M") if row.item.published else "-"
        outlets = f", {row.story.outlet_count} outlet(s)" if row.story else ""
        click.echo(f"{when}  story {row.story_id}{outlets}  {row.item.feed_name}: {row.item.title}")
        if row.duplicate_of:
            click.echo(f"    exact copy of {row.duplicate_of}")
        for match in row.matches:
            terms = ", ".join(f"{t.text!r} ({t.field} {t.start}-{t.end})" for t in match.terms)
            click.echo(f"    MATCH {match.rule_id}: {terms}")
            for clause in match.clauses:
                click.echo(f"        clause: {clause}")
    if not as_json:
        click.echo(f"{items} item(s), {len(stories)} story(ies), {matched} match(es)")


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    """Add the ``backtest`` command to ``cli``."""

    @cli.command()
    @click.option("--rule", "rule_id", default=None, help="only this rule (default: all)")
    @click.option("--since", default=None, help="items kept in Redis from this long ago: 24h")
    @click.option(
        "--items",
        "items_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="a JSON-lines file of items, run offline",
    )
    @click.option("--json", "as_json", is_flag=True, help="one JSON object per item")
    def backtest(
        rule_id: str | None, since: str | None, items_path: Path | None, as_json: bool
    ) -> None:
        """Run rules over recent items (Redis) or a file of items (offline)."""
        from workers.api import backtest_items, backtest_recent

        if since and items_path:
            raise click.UsageError("give --since or --items, not both")
        config = load()
        if rule_id is not None and rule_id not in {rule.id for rule in config.rules}:
            raise click.UsageError(f"no rule {rule_id!r} in the config")
        if items_path is not None:
            _show(backtest_items(config, read_items(items_path), rule_id), as_json)
            return
        from monitor.cli_alerts import connect

        try:
            seconds = parse_duration(since or "24h")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from exc
        _show(backtest_recent(connect(config), config, rule_id, seconds), as_json)
