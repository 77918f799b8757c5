"""Real local servers that receive deliveries in tests: a webhook receiver, an SMTP sink.

Role: the far side of the delivery channels, so tests exercise real HTTP and SMTP.

* :class:`WebhookReceiver`: an aiohttp server on ``127.0.0.1`` (a free port), run by its
  own event loop in a background thread. It verifies every request with the
  ``standardwebhooks`` package (an implementation independent of ours) and records it as
  a :class:`ReceivedWebhook` (unsigned senders such as Apprise are recorded with
  ``verified=False``). It answers 200 unless told otherwise with
  :meth:`WebhookReceiver.respond_with` (a queue of statuses or :class:`Reply` values,
  each used once, e.g. 503, 503, 200).
* :class:`SmtpSink`: an aiosmtpd ``Controller`` on ``127.0.0.1`` that keeps every message
  it accepts, parsed with ``email.policy.default``, as a :class:`ReceivedMail`. It can
  require AUTH (plain text, for tests only), answer DATA with a chosen reply, and speak
  TLS: STARTTLS (``starttls=`` a server context) or implicit TLS (``implicit_tls=``).

Fixtures ``webhook_receiver`` and ``smtp_sink`` start one per test and stop it after.
Use them from another test module with ``from receivers import webhook_receiver`` or
``pytest_plugins = ["receivers"]`` in the top-level conftest.

Invariants: both servers are ours, bound to the loopback interface only; ``stop()``
closes every socket and thread (tests run with warnings as errors), and a request that
is sleeping in the receiver is released at once by ``stop()``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (also: a port nobody serves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_secret() -> str:
    """A fresh Standard Webhooks secret, ``whsec_<base64 of 24 random bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, extra headers, a body, a delay before answering, and
    ``trickle`` seconds of answering a byte at a time (every 0.25 s) after the headers,
    as a receiver that no per-read timeout ever stops."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0
    trickle: float = 0.0


@dataclass(frozen=True)
class ReceivedWebhook:
    """One request as the receiver saw it. ``headers`` keys are lower-case."""

    id: str | None
    headers: dict[str, str]
    body: bytes
    json: Any
    verified: bool
    status: int  # what the receiver answered
    method: str = "POST"
    path: str = "/hook"
    form: dict[str, str] = field(default_factory=dict)  # for form-encoded bodies


class WebhookReceiver:
    """A real HTTP endpoint that checks Standard Webhooks signatures with ``secret``."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret if secret is not None else new_secret()
        self._lock = threading.Lock()
        self._received: list[ReceivedWebhook] = []
        self._replies: list[Reply] = []
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, sock).start())
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    def stop(self) -> None:
        if self._thread is None or self._runner is None:
            self._loop.close()
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def respond_with(self, *replies: int | Reply) -> None:
        """Answer the next requests with these, in order; 200 once they are used up."""
        with self._lock:
            self._replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    @property
    def received(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedWebhook]:
        """The requests, once at least ``count`` have arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.received
            if len(received) >= count:
                return received
            if time.monotonic() >= deadline:
                raise AssertionError(f"{len(received)} webhook(s) received, expected {count}")
            time.sleep(0.02)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        verified = True
        try:
            Webhook(self.secret).verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):
            verified = False
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {key: str(value) for key, value in (await request.post()).items()}
        with self._lock:
            reply = self._replies.pop(0) if self._replies else Reply()
            self._received.append(
                ReceivedWebhook(
                    headers.get("webhook-id"),
                    headers,
                    body,
                    parsed,
                    verified,
                    reply.status,
                    request.method,
                    request.path,
                    form,
                )
            )
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), reply.delay)
        if reply.trickle:
            response = web.StreamResponse(status=reply.status, headers=reply.headers)
            await response.prepare(request)
            end = time.monotonic() + reply.trickle
            while time.monotonic() < end and not self._stopping.is_set():
                await response.write(b" ")
                await asyncio.sleep(0.25)
            await response.write_eof()
            return response
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the envelope, the parsed message and who logged in."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    login: str | None  # the AUTH user name, None when the client did not log in
    tls: bool = False  # whether the message came over TLS (STARTTLS or implicit)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._sink.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.data_reply is not None:
            return self._sink.data_reply
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        with self._sink.lock:
            self._sink.messages.append(
                ReceivedMail(
                    envelope.mail_from or "", list(envelope.rcpt_tos), message, raw, login, tls
                )
            )
        return "250 OK"


class SmtpSink:
    """A real SMTP server that keeps what it receives.

    ``credentials`` (user, password) makes AUTH required (over plain text: tests only).
    ``data_reply`` (e.g. ``"451 4.3.0 try later"``) rejects every message with it.
    ``starttls`` (a server-side SSL context) offers STARTTLS; ``implicit_tls`` makes the
    whole connection TLS from the first byte (port 465 style).
    """

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        data_reply: str | None = None,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.credentials = credentials
        self.data_reply = data_reply
        self.lock = threading.Lock()
        self.messages: list[ReceivedMail] = []
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=5.0,
            # AUTH is enforced by the handler's MAIL hook instead of auth_required=True,
            # which warns (an error in tests) that AUTH without TLS is insecure.
            auth_require_tls=False,
            authenticator=self._authenticate,
            ssl_context=implicit_tls,
            tls_context=starttls,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            self.credentials is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == self.credentials
        )
        # handled=False: aiosmtpd then sends the 535 reply itself.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """The messages, once at least ``count`` have arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            if time.monotonic() >= deadline:
                raise AssertionError(f"{len(self.messages)} mail(s) received, expected {count}")
            time.sleep(0.02)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A started receiver with a fresh secret (``.secret``); stopped after the test."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started SMTP sink without AUTH; stopped after the test."""
    with SmtpSink() as sink:
        yield sink
