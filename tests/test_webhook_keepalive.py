"""Kept-alive webhook connections: a stale pooled connection costs no attempt.

The far side is a real HTTP/1.1 server on a socket (``_Server``) that answers with
keep-alive and can be told to drop the *n*-th request of a connection without an answer:
what a receiver's idle timeout does when it fires just as we send."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from test_delivery_webhook import make_alert

from monitor.config import WebhookChannel
from workers.delivery import DeliveryError, send_webhook
from workers.resources import _http_client


class _Server:
    """Answers 200 with keep-alive; drops request number ``drop_at`` of each connection
    (1-based) by closing the socket, or every first request with ``drop_at=1``."""

    def __init__(self, drop_at: int) -> None:
        self.drop_at = drop_at
        self.connections = 0
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            for number in range(1, 100):
                length = 0
                line = stream.readline()
                if not line:
                    return
                while line not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    line = stream.readline()
                stream.read(length)
                self.requests += 1
                if number == self.drop_at:
                    return  # closed with no answer
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._sock.close()
        self._accept.join(5)
        for conn in self._conns:  # wakes a handler waiting for a kept-alive request
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with _http_client() as http:
        yield http


def _channel(server: _Server) -> WebhookChannel:
    return WebhookChannel.model_validate({"type": "webhook", "url": server.url, "timeout": 2})


def test_connections_are_kept_alive(client: httpx.Client) -> None:
    server = _Server(drop_at=0)
    try:
        for _ in range(3):
            send_webhook(make_alert(), _channel(server), client=client)
        assert (server.connections, server.requests) == (1, 3)
    finally:
        server.stop()


def test_a_stale_reused_connection_is_retried_once_on_a_fresh_one(client: httpx.Client) -> None:
    server = _Server(drop_at=2)  # the pooled connection dies under the second send
    try:
        send_webhook(make_alert(), _channel(server), client=client)
        send_webhook(make_alert(), _channel(server), client=client)  # no error
        assert (server.connections, server.requests) == (2, 3)
    finally:
        server.stop()


def test_a_fresh_connection_that_fails_is_not_retried(client: httpx.Client) -> None:
    server = _Server(drop_at=1)
    try:
        with pytest.raises(DeliveryError) as caught:
            send_webhook(make_alert(), _channel(server), client=client)
        assert caught.value.transient
        assert (server.connections, server.requests) == (1, 1)
    finally:
        server.stop()
