"""``wirewatch alerts list|dead|replay`` and ``wirewatch stories [mute|unmute]``.

They talk to the Redis the service uses: ``redis.url`` or ``$REDIS_URL``, else the
embedded Redis of a running ``wirewatch run`` (found through its data folder).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import click
import redis

from monitor.config import Config
from monitor.config_types import parse_duration
from monitor.keys import Keys
from monitor.redis_server import running_url
from monitor.service import redis_url_for


def service_url(config: Config) -> str:
    """The service's Redis URL: ``redis.url``, ``$REDIS_URL`` or a running embedded one."""
    url = redis_url_for(config) or running_url(config.data_dir())
    if not url:
        raise click.ClickException(
            "no Redis to read: set REDIS_URL (or redis.url), or start 'wirewatch run'"
        )
    return url


def connect(config: Config) -> redis.Redis:
    """The service's Redis, for the operator commands (``alerts``, ``stories``, ``status``)."""
    return redis.Redis.from_url(service_url(config))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    """Add the commands to ``cli``; ``load()`` returns the validated config."""

    @cli.group()
    def alerts() -> None:
        """Alert history, dead letters, replays."""

    @alerts.command("list")
    @click.option("--rule", default=None, help="only this rule's alerts")
    @click.option("--limit", default=50, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
    def list_(rule: str | None, limit: int, as_json: bool) -> None:
        """The newest alerts, with their status per channel."""
        from workers.api import list_alerts

        config = load()
        found = list_alerts(connect(config), Keys(config.redis.prefix), rule=rule, limit=limit)
        for alert in found:
            if as_json:
                click.echo(json.dumps(alert.to_json()))
                continue
            statuses = ", ".join(f"{ch}: {st}" for ch, st in sorted(alert.channels.items()))
            click.echo(f"{_when(alert.raised_at)}  {alert.id}  [{alert.rule}] {alert.title}")
            click.echo(f"    story {alert.story}  {statuses or 'queued'}")
        if not found and not as_json:
            click.echo("no alerts")

    @alerts.command()
    @click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
    def dead(as_json: bool) -> None:
        """Deliveries that gave up, with every attempt's error."""
        from workers.api import list_dead

        config = load()
        letters = list_dead(connect(config), Keys(config.redis.prefix))
        for letter in letters:
            if as_json:
                click.echo(json.dumps(letter.to_json()))
                continue
            click.echo(f"{_when(letter.buried_at)}  {letter.id}  ({letter.kind}) {letter.title}")
            click.echo(f"    reason: {letter.reason}")
            for attempt in letter.attempts:
                click.echo(f"    try {attempt.attempt} at {_when(attempt.at)}: {attempt.reason}")
        if not letters and not as_json:
            click.echo("no dead letters")

    @alerts.command("replay")
    @click.argument("letter_id", required=False)
    @click.option("--all", "replay_all", is_flag=True, help="replay every dead letter")
    def replay_(letter_id: str | None, replay_all: bool) -> None:
        """Send a dead letter again (ID as shown by 'alerts dead', or an alert id)."""
        from workers.api import replay

        if bool(letter_id) == replay_all:
            raise click.UsageError("give one dead letter ID, or --all")
        config = load()
        done = replay(connect(config), config, None if replay_all else letter_id)
        if not done.replayed and not done.kept and letter_id:
            raise click.ClickException(f"no dead letter {letter_id!r}")
        for item in done.replayed:
            click.echo(f"replaying {item}")
        for item, why in done.kept.items():
            click.echo(f"kept {item}: {why}", err=True)
        if done.kept and not done.replayed:
            sys.exit(1)

    @cli.group(invoke_without_command=True)
    @click.option("--limit", default=20, show_default=True, help="newest stories shown")
    @click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
    @click.pass_context
    def stories(ctx: click.Context, limit: int, as_json: bool) -> None:
        """The newest stories (first seen, first outlet, outlets, items); mute, unmute."""
        if ctx.invoked_subcommand is not None:
            return
        from workers.api import recent_stories

        config = load()
        found = recent_stories(connect(config), Keys(config.redis.prefix), limit)
        for record in found:
            if as_json:
                click.echo(json.dumps(record.to_json(), ensure_ascii=False))
                continue
            view = record.view
            click.echo(f"{_when(view.first_seen)}  {view.id}  {record.title}")
            names = ", ".join(name for name, _ in view.outlets)
            click.echo(
                f"    first on {view.first_outlet}; {view.outlet_count} outlet(s): {names};"
                f" {view.items} item(s)"
            )
        if not found and not as_json:
            click.echo("no stories")

    @stories.command()
    @click.argument("story_id")
    @click.option("--for", "duration", default="7d", show_default=True, help="e.g. 12h, 7d")
    def mute(story_id: str, duration: str) -> None:
        """No alerts for STORY_ID (as shown by 'alerts list') for a while."""
        from workers.api import mute_story

        config = load()
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--for") from exc
        mute_story(connect(config), Keys(config.redis.prefix), story_id, seconds)
        click.echo(f"muted story {story_id} for {duration}")

    @stories.command()
    @click.argument("story_id")
    def unmute(story_id: str) -> None:
        """Alert on STORY_ID again."""
        from workers.api import unmute_story

        config = load()
        if unmute_story(connect(config), Keys(config.redis.prefix), story_id):
            click.echo(f"unmuted story {story_id}")
        else:
            click.echo(f"story {story_id} was not muted")
