"""A small real WebSub hub (https://www.w3.org/TR/websub/) for tests, on 127.0.0.1.

Like :mod:`feedserver`, it runs an aiohttp app on its own event loop in a background
thread. It speaks the hub's half of WebSub:

- ``POST /`` with ``hub.mode`` (un)subscribe, ``hub.topic``, ``hub.callback``,
  ``hub.lease_seconds``, ``hub.secret`` → 202 Accepted, then (asynchronously, as the spec
  says) a verification of intent: ``GET callback?hub.mode=…&hub.topic=…&hub.challenge=…
  &hub.lease_seconds=…``. Only a 200 echoing the challenge makes the (un)subscription
  take effect. Every request and verification is recorded.
- :meth:`Hub.publish` POSTs a body to every verified subscriber of a topic with
  ``X-Hub-Signature: <method>=<hex HMAC>`` (or a wrong one, or none, on request).
- :meth:`Hub.verify` sends a verification of its own making (e.g. for a topic nobody
  asked for).

Async methods may be awaited from any event loop (the test's): they run on the hub's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import socket
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from loop_thread import LoopThread

T = TypeVar("T")


@dataclass
class HubSubscription:
    topic: str
    callback: str
    secret: str | None
    lease_seconds: int


@dataclass(frozen=True)
class Verification:
    mode: str
    topic: str
    callback: str
    status: int
    echoed: bool  # the answer was exactly the challenge


class Hub(LoopThread):
    """``start()`` / ``stop()`` (or ``with``); ``url``; ``requests``, ``verifications``,
    ``subscriptions`` (keyed by ``(topic, callback)``)."""

    thread_name = "websub-hub"

    def __init__(self, *, max_lease: int | None = None) -> None:
        super().__init__()
        self.max_lease = max_lease
        self.requests: list[dict[str, str]] = []
        self.verifications: list[Verification] = []
        self.subscriptions: dict[tuple[str, str], HubSubscription] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # -- lifecycle ---------------------------------------------------------------------

    # -- what tests call ---------------------------------------------------------------

    def subscribers(self, topic: str) -> list[HubSubscription]:
        return [sub for (t, _), sub in list(self.subscriptions.items()) if t == topic]

    def requests_for(self, mode: str) -> list[dict[str, str]]:
        return [r for r in list(self.requests) if r.get("hub.mode") == mode]

    async def publish(
        self,
        topic: str,
        body: bytes | str,
        *,
        content_type: str = "application/rss+xml; charset=utf-8",
        signature: str = "valid",
        method: str = "sha256",
    ) -> list[int]:
        """Push ``body`` to the topic's subscribers; their answers' statuses.
        ``signature``: ``"valid"``, ``"wrong"`` (another secret's MAC) or ``"none"``."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        return await self._on_hub(self._publish(topic, data, content_type, signature, method))

    async def verify(self, callback: str, topic: str, mode: str = "subscribe") -> tuple[int, str]:
        """Send a verification of intent of our own; the callback's status and body."""
        return await self._on_hub(self._verify_raw(callback, topic, mode, 60))

    # -- the hub -----------------------------------------------------------------------

    async def _on_hub(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append(form)
        mode, topic, callback = (
            form.get("hub.mode"),
            form.get("hub.topic"),
            form.get("hub.callback"),
        )
        if mode not in ("subscribe", "unsubscribe") or not topic or not callback:
            return web.Response(status=400, text="hub.mode, hub.topic and hub.callback needed")
        lease = int(form.get("hub.lease_seconds") or 864000)
        if self.max_lease is not None:
            lease = min(lease, self.max_lease)
        task = asyncio.create_task(
            self._verify_request(mode, topic, callback, form.get("hub.secret"), lease)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.Response(status=202)

    async def _verify_request(
        self, mode: str, topic: str, callback: str, secret: str | None, lease: int
    ) -> None:
        await self._verify_raw(callback, topic, mode, lease)
        if not self.verifications[-1].echoed:
            return
        if mode == "subscribe":
            self.subscriptions[(topic, callback)] = HubSubscription(topic, callback, secret, lease)
        else:
            self.subscriptions.pop((topic, callback), None)

    async def _verify_raw(
        self, callback: str, topic: str, mode: str, lease: int
    ) -> tuple[int, str]:
        assert self._session is not None
        challenge = secrets.token_urlsafe(16)
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(lease)
        async with self._session.get(callback, params=params) as response:
            text = await response.text()
        self.verifications.append(
            Verification(
                mode, topic, callback, response.status, response.status == 200 and text == challenge
            )
        )
        return response.status, text

    async def _publish(
        self, topic: str, body: bytes, content_type: str, signature: str, method: str
    ) -> list[int]:
        assert self._session is not None
        statuses = []
        for sub in self.subscribers(topic):
            headers = {
                "Content-Type": content_type,
                "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"',
            }
            if sub.secret and signature != "none":
                key = sub.secret if signature == "valid" else "not-" + sub.secret
                mac = hmac.new(key.encode(), body, getattr(hashlib, method)).hexdigest()
                headers["X-Hub-Signature"] = f"{method}={mac}"
            async with self._session.post(sub.callback, data=body, headers=headers) as response:
                statuses.append(response.status)
        return statuses
