"""Who may talk to the HTTP API, and keeping secrets out of what it says.

Rules (tested in ``tests/test_api_security.py``):

- The server binds ``api.host`` (default ``127.0.0.1``). On any address but loopback it
  refuses to start without a token (:func:`check_exposure` raises
  :class:`ApiSecurityError`): an open dashboard on a LAN would show every alert.
- With a token configured (``api.token``, else ``$WIREWATCH_API_TOKEN``) every request
  but the public ones (``/healthz``, ``/readyz``, the dashboard's static files, which
  hold no data) needs ``Authorization: Bearer <token>``, loopback included. The check is
  constant-time (:func:`hmac.compare_digest`), and a refusal never echoes what was sent.
- :class:`Scrubber` replaces every secret of the config (webhook URLs and keys, headers,
  SMTP passwords, Apprise URLs, the API token) in a response body by ``**********``:
  a delivery error copied into a dead letter may quote the URL it failed on.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, SecretStr

from monitor.config import Config

MASK = "**********"
MIN_TOKEN_LENGTH = 16
TOKEN_ENV = "WIREWATCH_API_TOKEN"  # noqa: S105 (a variable name, not a password)
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/app.js", "/style.css", "/favicon.ico"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiSecurityError(Exception):
    """The API settings would expose data: the server does not start."""


def api_token(config: Config, env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token: ``api.token``, else ``$WIREWATCH_API_TOKEN``; None when neither."""
    if config.api.token is not None:
        return config.api.token.get_secret_value()
    value = (os.environ if env is None else env).get(TOKEN_ENV, "")
    return value or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve ``host`` without a (long enough) token unless it is loopback."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ApiSecurityError(
            f"the API token is too short: use at least {MIN_TOKEN_LENGTH} characters"
            " (e.g. `openssl rand -hex 32`)"
        )
    if token is None and not is_loopback(host):
        raise ApiSecurityError(
            f"refusing to serve the API on {host!r} without a token: set api.token"
            f' (e.g. "${{{TOKEN_ENV}}}") or ${TOKEN_ENV}, or bind api.host to 127.0.0.1'
        )


def authorised(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token``.

    Constant-time: both sides are hashed first, so not even the length leaks.
    """
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        given = "\x00"  # still compare, so a missing token takes as long as a wrong one
    theirs = hashlib.sha256(given.strip().encode()).digest()
    ours = hashlib.sha256(token.encode()).digest()
    return hmac.compare_digest(theirs, ours)


def auth_middleware(token: str | None) -> Middleware:
    """A middleware that asks for the bearer token on every non-public path."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            token is not None
            and request.path not in PUBLIC_PATHS
            and not authorised(request.headers.get("Authorization"), token)
        ):
            return web.json_response(
                {"error": "unauthorized: send 'Authorization: Bearer <token>'"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="wirewatch"'},
            )
        return await handler(request)

    return middleware


class Scrubber:
    """Replaces every secret value of a config in text; built once per app."""

    def __init__(self, config: Config, token: str | None, extra: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self._add(set(_secrets(config)) | set(extra) | ({token} if token else set()))

    def learn(self, config: Config) -> None:
        """Mask ``config``'s secrets too (a reload); the ones known before stay masked."""
        self._add(set(_secrets(config)))

    def _add(self, found: set[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        known = set(self._secrets) | {s for s in found if len(s) >= 4}
        self._secrets = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def _secrets(value: Any) -> Iterator[str]:
    """Every secret string in a config tree (models, lists, dicts)."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _secrets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets(item)
