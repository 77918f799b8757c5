"""The WebSub callback server: hubs verify our intent here and push content here.

Role: the inbound HTTP edge of WebSub, started by the poller when
``poller.websub.callback_url`` is set, listening on ``poller.websub.listen`` (a reverse
proxy maps the public callback URL onto it). The subscription state machine is
:mod:`monitor.websub`; pushed bodies go through the poller's own parse → first-seen →
enqueue path (:func:`monitor.feed_items.hand_over_body`), so a pushed item and a polled
item are handed over identically and never twice.

Routes, ``{feed_id}`` being :func:`monitor.keys.feed_id` of the configured URL:

- ``GET /websub/{feed_id}`` — verification of intent: 200 with ``hub.challenge`` when the
  topic and mode match a request of ours, else 404.
- ``POST /websub/{feed_id}`` — content distribution. 410 when we hold no subscription
  (the hub may drop it); a missing or wrong ``X-Hub-Signature`` is acknowledged (202, as
  the spec asks) but ignored and logged (``websub_signature_invalid``); a body that is not
  a feed is acknowledged and logged; a Redis failure is 503, so the hub retries;
  otherwise 200 after the new items are enqueued, with one ``websub_content_received``
  log line. Bodies are capped at ``poller.max_bytes`` (413 beyond).

Resources: the app borrows the poller's :class:`~monitor.feed_poll.PollContext` (Redis,
HTTP session, parse pool; the poller closes them after this server) and owns one
background task, the subscriber's request loop (:meth:`Subscriber.run`), started and
stopped in its ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis
import structlog
from aiohttp import web

from monitor.config import FeedConfig
from monitor.feed_items import hand_over_body
from monitor.feed_poll import PollContext
from monitor.keys import feed_id
from monitor.poll_errors import FeedParseError
from monitor.websub import Subscriber, signature_ok

log = structlog.get_logger()

CONTEXT = web.AppKey("context", PollContext)
SUBSCRIBER = web.AppKey("subscriber", Subscriber)


def callback_app(ctx: PollContext, subscriber: Subscriber) -> web.Application:
    app = web.Application(client_max_size=ctx.config.poller.max_bytes)
    app[CONTEXT] = ctx
    app[SUBSCRIBER] = subscriber
    app.router.add_get("/websub/{feed_id}", _verify)
    app.router.add_post("/websub/{feed_id}", _content)
    app.cleanup_ctx.append(_request_loop)
    return app


class CallbackServer:
    """``start()`` / ``stop()`` the callback app on ``poller.websub.listen``."""

    def __init__(self, ctx: PollContext, subscriber: Subscriber) -> None:
        self._app = callback_app(ctx, subscriber)
        self._settings = subscriber.settings
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._settings.listen_host, self._settings.listen_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info(
            "websub_listening", listen=self._settings.listen, callback=self._settings.callback_url
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


async def _request_loop(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(app[SUBSCRIBER].run(stop), name="websub-requests")
    yield
    stop.set()
    await task


async def _verify(request: web.Request) -> web.Response:
    fid = request.match_info["feed_id"]
    try:
        answer = await request.app[SUBSCRIBER].verify(fid, request.query)
    except redis.RedisError as exc:
        log.warning("websub_verification_failed", feed_id=fid, reason=str(exc))
        return web.Response(status=503, text="try again later")
    if answer is None:
        return web.Response(status=404, text="no such subscription")
    return web.Response(text=answer, content_type="text/plain")


async def _content(request: web.Request) -> web.Response:
    fid = request.match_info["feed_id"]
    ctx, subscriber = request.app[CONTEXT], request.app[SUBSCRIBER]
    body = await request.read()
    try:
        sub = await subscriber.subscription(fid)
        if sub is None or not sub.accepts_content:
            log.info("websub_content_unwanted", feed_id=fid, bytes=len(body))
            return web.Response(status=410, text="no such subscription")
        context = {"feed_url": sub.feed_url, "hub": sub.hub, "bytes": len(body)}
        header = request.headers.get("X-Hub-Signature")
        if not signature_ok(header, body, sub.secret):
            reason = "missing" if header is None else "wrong"
            log.warning("websub_signature_invalid", signature=reason, **context)
            return web.Response(status=202, text="signature not valid; ignored")
        feed = await _feed_config(ctx, fid, sub.feed_url)
        content_type = request.headers.get("Content-Type")
        parsed, new, jobs = await hand_over_body(
            ctx, feed, body, content_type=content_type, url=sub.topic
        )
    except FeedParseError as exc:
        log.warning("websub_content_unreadable", feed_id=fid, reason=exc.reason)
        return web.Response(status=202, text="not a feed; ignored")
    except redis.RedisError as exc:
        log.warning("websub_content_failed", feed_id=fid, reason=str(exc))
        return web.Response(status=503, text="try again later")
    log.info(
        "websub_content_received",
        feed=feed.display_name,
        items=len(parsed.items),
        new=len(new),
        jobs=len(jobs),
        **context,
    )
    return web.Response(text="ok")


async def _feed_config(ctx: PollContext, fid: str, url: str) -> FeedConfig:
    """The feed's config: ours, else the one synced to the shared schedule, else bare."""
    for feed in ctx.config.feeds:
        if feed_id(feed.url) == fid:
            return feed
    synced = await ctx.client.hget(ctx.keys.feed_conf(fid), "config")
    if synced:
        try:
            return FeedConfig.model_validate_json(synced)
        except ValueError:
            pass
    return FeedConfig(url=url)
