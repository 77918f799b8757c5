"""The ``wirewatch`` command line: run, poll, work, check (and alerts, stories).

Every command takes ``--config PATH`` (or ``$WIREWATCH_CONFIG``; default
``config/wirewatch.yaml``). The CLI modules are the composition root: the only places in ``monitor``
that import ``workers``, and only its public surface (``workers.api``).
"""

from __future__ import annotations

import sys

import click
import structlog

from monitor.cli_alerts import register as register_alert_commands
from monitor.cli_backtest import register as register_backtest_command
from monitor.cli_entities import register as register_entities_command
from monitor.cli_feeds import register as register_feed_commands
from monitor.cli_match import register as register_match_command
from monitor.cli_serve import register as register_serve_command
from monitor.cli_status import register as register_status_commands
from monitor.config import Config
from monitor.config_loader import ConfigError, load_config
from monitor.logs import configure_logging
from monitor.redis_server import RedisServerError

log = structlog.get_logger()


def _load(path: str | None, *, check_queries: bool = False) -> Config:
    """The validated config; on errors, print every one of them and exit 2."""
    check_query = None
    if check_queries:
        from workers.api import query_error

        check_query = query_error
    try:
        return load_config(path, check_query=check_query)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _load_checked(path: str | None) -> Config:
    """The config with every rule's query checked too, and logging set up from it."""
    config = _load(path, check_queries=True)
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
    from workers.api import template_problems

    config = _load_checked(_config_path())
    # Templates are also rendered once, on a sample alert: a misspelt name or output that
    # is not JSON shows here rather than in the first real alert's dead letter.
    problems = template_problems(config)
    if problems:
        click.echo(f"{config.source}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    click.echo(
        f"{config.source}: ok — {len(config.feeds)} feeds, {len(config.channels)} channels, "
        f"{len(config.rules)} rules"
    )


@cli.command()
@_config_option
def run() -> None:
    """Run everything here: (embedded) Redis, workers, the poller (and the API if enabled)."""
    from monitor.api_security import ApiSecurityError
    from monitor.cli_serve import start_api
    from monitor.service import ApiStartError, run_service
    from workers.api import query_error

    config = _load_checked(_config_path())
    try:
        run_service(
            config, check_query=query_error, start_api=start_api if config.api.enabled else None
        )
    except RedisServerError as exc:
        raise click.ClickException(f"cannot start the embedded Redis: {exc}") from exc
    except (ApiSecurityError, ApiStartError) as exc:
        raise click.ClickException(f"cannot serve the API: {exc}") from exc


@cli.command()
@_config_option
def poll() -> None:
    """Run a poller only (needs REDIS_URL or redis.url)."""
    from monitor.service import redis_url_for, serve_poller

    config = _load_checked(_config_path())
    url = redis_url_for(config)
    if not url:
        raise click.UsageError("'wirewatch poll' needs REDIS_URL or redis.url in the config")
    from workers.api import query_error

    serve_poller(config, url, check_query=query_error)


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


register_alert_commands(cli, lambda: _load(_config_path()))
register_feed_commands(cli, lambda: _load(_config_path()))
register_status_commands(cli, lambda: _load(_config_path()))
register_match_command(cli, lambda: _load(_config_path()))
register_backtest_command(cli, lambda: _load(_config_path()))
register_entities_command(cli, lambda: _load(_config_path()))
register_serve_command(cli, lambda: _load(_config_path()))


def _accept_config_everywhere(group: click.Group) -> None:
    """Give every sub-command (and sub-group) its own ``--config``, as the README says."""
    for command in group.commands.values():
        if not any(param.name == "config" for param in command.params):
            command.params.append(
                click.Option(
                    ["--config"],
                    type=click.Path(dir_okay=False),
                    default=None,
                    expose_value=False,
                    callback=_remember_config,
                    help=_CONFIG_HELP,
                )
            )
        if isinstance(command, click.Group):
            _accept_config_everywhere(command)


_accept_config_everywhere(cli)


def main() -> None:
    cli(prog_name="wirewatch")
