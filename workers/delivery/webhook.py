"""Webhook delivery: one JSON POST, signed per Standard Webhooks.

Role: the I/O shell around :func:`workers.delivery.render.webhook_body`. Input: an alert
and its :class:`~monitor.config.WebhookChannel`. Output: nothing on a 2xx answer, else a
:class:`~workers.delivery.errors.DeliveryError` that says whether a retry can help.

Headers (https://www.standardwebhooks.com/): ``webhook-id`` is ``alert.id``, so a
receiver deduplicates at-least-once deliveries; ``webhook-timestamp`` is unix seconds at
the time of this attempt; ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` over
``id.timestamp.body`` and is sent only when the channel has a secret. The channel's own
headers are sent too, but cannot replace the protocol headers above.

Invariants: runs synchronously (inside an rq job); never follows redirects (a POST
that is redirected is a configuration problem, and following it could leak the body);
never puts the URL, a header value or the secret into an error or log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

import httpx

from monitor.config import WebhookChannel
from monitor.signing import sign
from workers.delivery.errors import DeliveryError
from workers.delivery.render import one_line, webhook_body
from workers.model import Alert

__all__ = ["USER_AGENT", "parse_retry_after", "send_webhook"]


def _version() -> str:
    try:
        return version("wirewatch")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0"


USER_AGENT = f"wirewatch/{_version()}"
_CHANNEL = "webhook"
_EXCERPT = 200  # characters of a failed response body kept in the error reason
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


def send_webhook(
    alert: Alert,
    channel: WebhookChannel,
    *,
    client: httpx.Client | None = None,
    now: Callable[[], float] = time.time,
) -> None:
    """POST ``alert`` to ``channel.url``; return on 2xx, raise DeliveryError otherwise.

    ``client`` lets a caller reuse connections; without it a client is opened and closed
    here. ``now`` is the clock for ``webhook-timestamp`` and for HTTP-date Retry-After.
    """
    body = webhook_body(alert)
    headers = _headers(alert, channel, body, int(now()))
    try:
        if client is None:
            with httpx.Client(follow_redirects=False) as own:
                response = _post(own, channel, body, headers)
        else:
            response = _post(client, channel, body, headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(
            _CHANNEL, f"timed out after {channel.timeout:g}s ({type(exc).__name__})", True
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise DeliveryError(_CHANNEL, "unsupported URL scheme", False) from exc
    except httpx.TransportError as exc:
        # Refused, reset or dropped connections, DNS failures, TLS handshake failures.
        raise DeliveryError(_CHANNEL, f"{type(exc).__name__}: {_excerpt(str(exc))}", True) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DeliveryError(_CHANNEL, f"{type(exc).__name__}: {_excerpt(str(exc))}", False) from exc
    _check(response, now())


def _headers(alert: Alert, channel: WebhookChannel, body: bytes, timestamp: int) -> httpx.Headers:
    headers = httpx.Headers({"User-Agent": USER_AGENT})
    headers.update(channel.headers)
    # Protocol headers last: a channel's custom headers cannot replace them.
    headers["Content-Type"] = "application/json"
    headers["webhook-id"] = alert.id
    headers["webhook-timestamp"] = str(timestamp)
    if channel.secret is not None and channel.secret.get_secret_value():
        try:
            signature = sign(channel.secret.get_secret_value(), alert.id, timestamp, body)
        except ValueError as exc:
            # decode_secret's message names the problem, never the secret itself.
            raise DeliveryError(_CHANNEL, f"bad secret: {exc}", False) from exc
        headers["webhook-signature"] = signature
    return headers


def _post(
    client: httpx.Client, channel: WebhookChannel, body: bytes, headers: httpx.Headers
) -> httpx.Response:
    return client.post(
        channel.url,
        content=body,
        headers=headers,
        timeout=channel.timeout,
        follow_redirects=False,
    )


def _check(response: httpx.Response, now: float) -> None:
    """Return on 2xx; otherwise raise the error the status calls for."""
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"HTTP {status}"
    if response.reason_phrase:
        reason += f" {response.reason_phrase}"
    if 300 <= status < 400:
        reason += " (redirects are not followed; point the channel at the final URL)"
    else:
        excerpt = _excerpt(response.text)
        if excerpt:
            reason += f": {excerpt}"
    transient = status >= 500 or status in _TRANSIENT_STATUSES
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    raise DeliveryError(
        _CHANNEL,
        reason,
        transient,
        status=status,
        retry_after=retry_after if transient else None,
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # a "-0000" zone; RFC 9110 HTTP-dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _excerpt(text: str) -> str:
    """A short single-line excerpt, safe for a log line."""
    line = one_line(text)
    return line if len(line) <= _EXCERPT else line[: _EXCERPT - 1] + "…"
