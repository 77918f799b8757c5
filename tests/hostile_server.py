"""A raw asyncio TCP server that misbehaves on purpose, for the hostile-input tests.

aiohttp's server is too well-behaved for some tricks, so this one speaks HTTP/1.1 by
hand, on 127.0.0.1 and a free port, in its own event loop in a background thread. The
request path picks the trick:

========================  ============================================================
path                      what the server does
========================  ============================================================
``/drip``                 announces 100 KB, then sends one byte every 100 ms
``/endless``              a chunked body that never ends (64 KB chunks)
``/bomb``                 ``Content-Encoding: gzip``: an endless stream of compressed
                          zeros, produced as it is sent (each ~1 KB inflates to 1 MB)
``/bomb.static``          a pre-compressed 100 MB of zeros (~100 KB, Content-Length)
``/reset``                announces 5,000 bytes, sends 100, then resets the socket
``/reset.early``          resets the socket before sending anything
========================  ============================================================

Use the ``hostile_server`` fixture, or ``with HostileServer() as server: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterator

import pytest
from loop_thread import LoopThread

_Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]
_ZEROS = bytes(1 << 20)


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _drip(writer: asyncio.StreamWriter) -> None:
    writer.write(
        _head("200 OK", {"Content-Type": "application/rss+xml", "Content-Length": "100000"})
    )
    while True:
        writer.write(b"<")
        await writer.drain()
        await asyncio.sleep(0.1)


async def _endless(writer: asyncio.StreamWriter) -> None:
    headers = {"Content-Type": "application/rss+xml", "Transfer-Encoding": "chunked"}
    writer.write(_head("200 OK", headers))
    chunk = b"%x\r\n%s\r\n" % (65536, b"<!-- endless -->".ljust(65536, b" "))
    while True:
        writer.write(chunk)
        await writer.drain()


async def _bomb(writer: asyncio.StreamWriter) -> None:
    headers = {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
    writer.write(_head("200 OK", {**headers, "Connection": "close"}))
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    while True:  # about 1 KB on the wire for every MB of zeros
        writer.write(compressor.compress(_ZEROS) + compressor.flush(zlib.Z_SYNC_FLUSH))
        await writer.drain()


_STATIC_BOMB: list[bytes] = []


async def _bomb_static(writer: asyncio.StreamWriter) -> None:
    if not _STATIC_BOMB:  # built from 1 MB pieces: the test measures memory
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [compressor.compress(_ZEROS) for _ in range(100)]
        _STATIC_BOMB.append(b"".join(parts) + compressor.flush())
    body = _STATIC_BOMB[0]
    headers = {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
    writer.write(_head("200 OK", {**headers, "Content-Length": str(len(body))}) + body)
    await writer.drain()


async def _reset_mid_body(writer: asyncio.StreamWriter) -> None:
    writer.write(_head("200 OK", {"Content-Type": "application/rss+xml", "Content-Length": "5000"}))
    writer.write(b"<?xml version='1.0'?><rss version='2.0'><channel>".ljust(100, b" "))
    await writer.drain()
    await asyncio.sleep(0.05)
    _reset(writer)


async def _reset_early(writer: asyncio.StreamWriter) -> None:
    _reset(writer)


ROUTES: dict[str, _Handler] = {
    "/drip": _drip,
    "/endless": _endless,
    "/bomb": _bomb,
    "/bomb.static": _bomb_static,
    "/reset": _reset_mid_body,
    "/reset.early": _reset_early,
}


class HostileServer(LoopThread):
    """``start()`` / ``stop()`` (or ``with``), ``url(path)``, ``hits(path)``."""

    thread_name = "hostile-server"

    def __init__(self) -> None:
        super().__init__()
        self._server: asyncio.Server | None = None
        self._hits: dict[str, int] = {}
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def hits(self, path: str) -> int:
        return self._hits.get("/" + path.lstrip("/"), 0)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        server = self._server
        if server is None:
            return
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode("latin-1")
            self._hits[path] = self._hits.get(path, 0) + 1
            handler = ROUTES.get(path)
            if handler is None:
                writer.write(_head("404 Not Found", {"Content-Length": "0"}))
                await writer.drain()
            else:
                await handler(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up, as it should
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@pytest.fixture
def hostile_server() -> Iterator[HostileServer]:
    """A started :class:`HostileServer`, stopped after the test."""
    with HostileServer() as server:
        yield server
