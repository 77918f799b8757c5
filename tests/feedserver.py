"""A real local HTTP feed server for tests, usable from plain (sync) tests.

:class:`FeedServer` runs an aiohttp app on its own event loop in a background thread,
on 127.0.0.1 and a free port. A test sets what a path answers — body, status, headers,
a delay, and validators (``etag``, ``last_modified``) for conditional GET → 304 — and
reads how often each path was requested and with which headers.

Use the ``feed_server`` fixture (import it into a test module, or register this module
as a plugin in ``conftest.py``), or ``with FeedServer() as server: ...``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from loop_thread import LoopThread

RSS = "application/rss+xml; charset=utf-8"


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str | None = RSS
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    etag: str | None = None
    last_modified: str | None = None
    chunked: bool = False


class FeedServer(LoopThread):
    """``start()`` / ``stop()`` (or ``with``), ``set(path, body, ...)``, ``url(path)``."""

    thread_name = "feed-server"

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[str, Route] = {}
        self._requests: dict[str, list[dict[str, str]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------

    # -- what tests call ---------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def set(
        self,
        path: str,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str | None = RSS,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        etag: str | None = None,
        last_modified: str | None = None,
        chunked: bool = False,
    ) -> str:
        """Make ``path`` answer with ``body``; returns ``url(path)``.

        ``chunked`` sends the body in chunks without a Content-Length (as many servers
        do for generated feeds).
        """
        data = body.encode("utf-8") if isinstance(body, str) else body
        route = Route(
            data, status, content_type, dict(headers or {}), delay, etag, last_modified, chunked
        )
        with self._lock:
            self._routes["/" + path.lstrip("/")] = route
        return self.url(path)

    def hits(self, path: str) -> int:
        with self._lock:
            return len(self._requests["/" + path.lstrip("/")])

    def requests(self, path: str) -> list[dict[str, str]]:
        """The headers of every request made to ``path``, oldest first."""
        with self._lock:
            return list(self._requests["/" + path.lstrip("/")])

    # -- the server --------------------------------------------------------------------

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gave up (a timeout test) cancels the
        # handler's delay, so stop() does not wait for it.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._requests[request.path].append(dict(request.headers))
            route = self._routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="no such feed")
        if route.delay:
            await asyncio.sleep(route.delay)
        headers = dict(route.headers)
        if route.etag:
            headers["ETag"] = route.etag
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        if _not_modified(request, route):
            return web.Response(status=304, headers=headers)
        if route.content_type:
            headers["Content-Type"] = route.content_type
        if not route.chunked:
            return web.Response(status=route.status, body=route.body, headers=headers)
        response = web.StreamResponse(status=route.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(route.body), 4096):
            await response.write(route.body[start : start + 4096])
        await response.write_eof()
        return response


def _not_modified(request: web.Request, route: Route) -> bool:
    # RFC 9110: If-None-Match wins over If-Modified-Since when both are sent.
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return route.etag is not None and route.etag in {
            tag.strip() for tag in if_none_match.split(",")
        }
    since = request.headers.get("If-Modified-Since")
    return since is not None and route.last_modified is not None and since == route.last_modified


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A started :class:`FeedServer`, stopped after the test."""
    with FeedServer() as server:
        yield server


def rss(
    *entries: tuple[str, str], title: str = "Test wire", link: str = "https://example.com/"
) -> str:
    """A small RSS 2.0 document; each entry is ``(guid, title)``, linked under ``link``."""
    items = "".join(
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{headline}</title>"
        f"<link>{link}{guid}?utm_source=rss</link>"
        f"<description>&lt;p&gt;Body of {headline}&lt;/p&gt;</description>"
        "<pubDate>Mon, 06 Jan 2025 10:00:00 GMT</pubDate></item>"
        for guid, headline in entries
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>{title}</title><link>{link}</link>{items}</channel></rss>"
    )
