"""The HTTP API and dashboard server: ``wirewatch serve``, and part of ``wirewatch run``.

Inputs: the validated config, a Redis URL and the workers' readers (:class:`Sources`,
handed over by the composition root, :mod:`monitor.cli_serve`). Outputs: a running
aiohttp server (:func:`start_api` returns its runner; :func:`serve_api` blocks until
SIGINT/SIGTERM). Hot reload: ``serve`` watches the config files and takes SIGHUP as
``run`` does (:mod:`monitor.reload`); under ``run`` the service hands the API each new
config. Either way :func:`~monitor.api_state.reload_api` swaps what the handlers read.

Routes: ``/healthz``, ``/readyz`` (:mod:`monitor.api_readiness`), the JSON API under
``/api`` (:mod:`monitor.api_routes`), the alert stream (:mod:`monitor.api_stream`), the
dashboard (``/``, ``/app.js``, ``/style.css``: files of ``monitor/dashboard`` shipped
in the package), and any ``extra_routes`` (``/metrics``). Security (token, exposure
check, scrubbing) is :mod:`monitor.api_security`.

Resources (aiohttp's ``cleanup_ctx``): one async Redis client (:data:`REDIS`, for the
stream and pings) and one sync client (:data:`SYNC_REDIS`, for the CLI's readers, run in
threads), both closed on shutdown. Shutdown order: stop listening → set
:data:`STOPPING` (streams end within a second) → wait up to :data:`SHUTDOWN_GRACE_S`
for requests in flight → close the Redis clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from importlib import resources
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from monitor import api_routes
from monitor.api_context import CONFIG, KEYS, REDIS, ServedConfig
from monitor.api_readiness import healthz, readyz
from monitor.api_security import (
    Handler,
    Scrubber,
    api_token,
    auth_middleware,
    check_exposure,
)
from monitor.api_state import SCRUB, SOURCES, STOPPING, SYNC_REDIS, Sources, reload_api
from monitor.api_stream import alert_stream
from monitor.config import Config
from monitor.config_diff import RESTART_ONLY
from monitor.config_loader import QueryCheck
from monitor.keys import Keys
from monitor.reload import ConfigWatcher, Hangup, watch_config

log = structlog.get_logger()

SHUTDOWN_GRACE_S = 5.0
_DASHBOARD = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No framing, no sniffing, no referrers, no caching of data; scripts from us only."""
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def _redis_down(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Redis unreachable or hung during a request: 503 with the reason, not a 500 (the
    data is not there to serve; a retry later may find it)."""
    try:
        return await handler(request)
    except (redis.RedisError, TimeoutError) as exc:
        reason = f"redis unavailable: {type(exc).__name__}"
        log.warning("api_redis_unavailable", path=request.path, reason=str(exc))
        return web.json_response({"error": reason}, status=503)


class _AccessLog(AbstractAccessLogger):
    """One ``api_request`` line per request: method, path (no query string), status, time.

    Headers are never logged, so neither is a bearer token.
    """

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        quiet = request.path in ("/healthz", "/readyz")  # probes every few seconds
        (log.debug if quiet else log.info)(
            "api_request",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round(time * 1000, 1),
        )


def _dashboard_handler(name: str, content_type: str) -> Handler:
    body = (resources.files("monitor") / "dashboard" / name).read_bytes()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    return handler


def _clients(redis_url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=2, health_check_interval=30
        )
        app[SYNC_REDIS] = redis.Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=10
        )
        try:
            yield
        finally:
            await app[REDIS].aclose()
            app[SYNC_REDIS].close()

    return ctx


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()


def build_app(
    config: Config,
    redis_url: str,
    sources: Sources,
    *,
    token: str | None = None,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """The application; ``extra_routes`` (e.g. ``web.get("/metrics", handler)``) are
    served under the same token and headers."""
    app = web.Application(middlewares=[_headers, auth_middleware(token), _redis_down])
    app[CONFIG] = ServedConfig(config)
    app[KEYS] = Keys(config.redis.prefix)
    app[SOURCES] = sources
    redis_password = urlsplit(redis_url).password
    app[SCRUB] = Scrubber(config, token, extra=[redis_password] if redis_password else [])
    app[STOPPING] = asyncio.Event()
    app.cleanup_ctx.append(_clients(redis_url))
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/alerts/stream", alert_stream)
    api_routes.add_routes(app)
    for path, (name, content_type) in _DASHBOARD.items():
        app.router.add_get(path, _dashboard_handler(name, content_type))
    app.router.add_routes(extra_routes)
    return app


async def start_api(
    config: Config,
    redis_url: str,
    sources: Sources,
    *,
    host: str | None = None,
    port: int | None = None,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
) -> web.AppRunner:
    """Listen on ``host:port`` (default ``api.host``/``api.port``); ``await
    runner.cleanup()`` stops it. Raises :class:`~monitor.api_security.ApiSecurityError`
    when the address would be exposed without a token, ``OSError`` when it is taken."""
    host = config.api.host if host is None else host
    port = config.api.port if port is None else port
    token = api_token(config)
    check_exposure(host, token)
    app = build_app(config, redis_url, sources, token=token, extra_routes=extra_routes)
    runner = web.AppRunner(
        app, access_log_class=_AccessLog, shutdown_timeout=SHUTDOWN_GRACE_S, handle_signals=False
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = [f"http://{_host_port(address)}/" for address in runner.addresses]
    log.info("api_started", urls=addresses, token_required=token is not None)
    return runner


def _host_port(address: object) -> str:
    host, port = address[0], address[1]  # type: ignore[index]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


async def _serve(
    config: Config,
    redis_url: str,
    sources: Sources,
    host: str | None,
    port: int | None,
    extra_routes: Iterable[web.AbstractRouteDef],
    check_query: QueryCheck | None,
) -> None:
    hangup = Hangup()
    hangup.install()  # first: a SIGHUP while starting is a reload request, not the end
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = await start_api(
        config, redis_url, sources, host=host, port=port, extra_routes=extra_routes
    )
    # The listener's own settings (api.*) and Redis need a restart; rules, feeds and
    # channels are served from the new config as soon as it is valid.
    watcher = ConfigWatcher(
        config, role="api", fixed=(*RESTART_ONLY, "api"), check_query=check_query
    )
    watching = asyncio.create_task(
        watch_config(watcher, hangup, functools.partial(reload_api, runner.app), stop)
    )
    try:
        await stop.wait()
        log.info("api_stopping")
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal: the default, exit
            loop.remove_signal_handler(signum)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
            await runner.cleanup()
        log.info("api_stopped")


def serve_api(
    config: Config,
    redis_url: str,
    sources: Sources,
    *,
    host: str | None = None,
    port: int | None = None,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    check_query: QueryCheck | None = None,
) -> None:
    """``wirewatch serve``: serve until SIGINT/SIGTERM (a second one stops at once);
    a changed config file or SIGHUP reloads what the API shows (``check_query`` validates
    the rules of a new config, as ``wirewatch check`` does)."""
    asyncio.run(_serve(config, redis_url, sources, host, port, extra_routes, check_query))
