"""The ``wirewatch`` command line: run, poll, work, check.

Every command takes ``--config PATH`` (or ``$WIREWATCH_CONFIG``; default
``config/wirewatch.yaml``). This module is the composition root: the only place in
``monitor`` that imports ``workers``, and only its public surface (``workers.api``).
"""

from __future__ import annotations

import asyncio
import sys

import click
import structlog

from monitor.config import Config
from monitor.config_loader import ConfigError, load_config
from monitor.logs import configure_logging

log = structlog.get_logger()


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _load_checked(path: str | None) -> Config:
    """Load the config and refuse to start when any rule's query does not parse."""
    from workers.api import query_problems

    config = _load(path)
    problems = query_problems(config)
    if problems:
        click.echo(f"{config.source}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    configure_logging(config.logging.level, config.logging.format)
    return config


_CONFIG_HELP = "config file (default: $WIREWATCH_CONFIG or config/wirewatch.yaml)"


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``--config`` works before or after the command name; the later one wins."""
    if value is not None:
        ctx.ensure_object(dict)["config"] = value  # a sub-command shares its parent's obj


_config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    expose_value=False,
    callback=_remember_config,
    help=_CONFIG_HELP,
)


@click.group()
@_config_option
@click.version_option(package_name="wirewatch")
def cli() -> None:
    """wirewatch: watch news feeds and alert on the stories that match your rules."""


def _config_path() -> str | None:
    obj = click.get_current_context().find_object(dict)
    return obj.get("config") if obj else None


@cli.command()
@_config_option
def check() -> None:
    """Validate the config: every error, with its line and path; exit 2 if any."""
    config = _load_checked(_config_path())
    click.echo(
        f"{config.source}: ok — {len(config.feeds)} feeds, {len(config.channels)} channels, "
        f"{len(config.rules)} rules"
    )


@cli.command()
@_config_option
def run() -> None:
    """Run everything here: (embedded) Redis, workers and the poller."""
    from monitor.service import run_service

    run_service(_load_checked(_config_path()))


@cli.command()
@_config_option
def poll() -> None:
    """Run a poller only (needs REDIS_URL or redis.url)."""
    from monitor.service import redis_url_for, serve_poller

    config = _load_checked(_config_path())
    url = redis_url_for(config)
    if not url:
        raise click.UsageError("'wirewatch poll' needs REDIS_URL or redis.url in the config")
    asyncio.run(serve_poller(config, url))


@cli.command()
@_config_option
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
def work(burst: bool) -> None:
    """Run one rq worker for the items and alerts queues (needs REDIS_URL or redis.url)."""
    from monitor.service import redis_url_for
    from workers.api import run_worker

    config = _load_checked(_config_path())
    url = redis_url_for(config)
    if not url:
        raise click.UsageError("'wirewatch work' needs REDIS_URL or redis.url in the config")
    run_worker(config, url, burst=burst)


def main() -> None:
    cli(prog_name="wirewatch")
