"""``wirewatch serve``: the HTTP API and dashboard on their own (see :mod:`monitor.api_server`).

The composition root of the API: it hands the server the workers' readers
(``workers.api``, the same the ``alerts`` and ``stories`` commands use) as a
:class:`~monitor.api_state.Sources`, and the routes other modules add (``/metrics``).
``wirewatch run`` starts the same server through :func:`start_api` when ``api.enabled``.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import redis
from aiohttp import web

from monitor.api_security import ApiSecurityError
from monitor.api_server import serve_api
from monitor.api_server import start_api as _start_api
from monitor.api_state import JsonRecord, Sources
from monitor.cli_alerts import service_url
from monitor.config import Config
from monitor.keys import Keys
from monitor.metrics_export import metrics_handler


def sources() -> Sources:
    """The readers of alerts, dead letters and stories, from ``workers.api``."""
    from workers.api import list_alerts, list_dead, story_page, story_records

    def story(connection: redis.Redis, keys: Keys, story_id: str) -> JsonRecord | None:
        return story_records(connection, keys, [story_id]).get(story_id)

    return Sources(
        alerts=lambda connection, keys, rule, limit: list_alerts(
            connection, keys, rule=rule, limit=limit
        ),
        dead=list_dead,
        stories=story_page,
        story=story,
    )


def extra_routes() -> list[web.AbstractRouteDef]:
    """Routes served beside the API, under the same token (``/metrics``)."""
    return [web.get("/metrics", metrics_handler)]


async def start_api(config: Config, redis_url: str) -> web.AppRunner:
    """For ``wirewatch run``: serve on ``api.host:api.port``; ``await runner.cleanup()``
    stops it. Raises ``ApiSecurityError`` (exposed without a token) or ``OSError``."""
    return await _start_api(config, redis_url, sources(), extra_routes=extra_routes())


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    """Add ``serve`` to ``cli``; ``load()`` returns the validated config."""

    @cli.command()
    @click.option("--host", default=None, help="address to listen on (default: api.host)")
    @click.option("--port", type=int, default=None, help="TCP port (default: api.port)")
    def serve(host: str | None, port: int | None) -> None:
        """Serve the HTTP API and dashboard (127.0.0.1:8080 unless configured)."""
        from monitor.logs import configure_logging
        from workers.api import query_error

        config = load()
        configure_logging(config.logging.level, config.logging.format)
        try:
            serve_api(
                config,
                service_url(config),
                sources(),
                host=host,
                port=port,
                extra_routes=extra_routes(),
                check_query=query_error,
            )
        except ApiSecurityError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(f"cannot listen: {exc}") from exc
