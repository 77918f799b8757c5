"""Webhook delivery: one POST, signed per Standard Webhooks.

Role: the I/O shell around :mod:`.formats`. Input: an alert (or a digest: alerts and a
digest id) and its :class:`~monitor.config.WebhookChannel`. Output: nothing on a 2xx
answer, else a :class:`~workers.delivery.errors.DeliveryError` that says whether a retry
can help.

Headers (https://www.standardwebhooks.com/), sent for every payload format:
``webhook-id`` is ``alert.id`` (a digest's id for a digest), so a receiver deduplicates
at-least-once deliveries; ``webhook-timestamp`` is unix seconds at the time of this
attempt; ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` over ``id.timestamp.body``
(the exact bytes sent), one per key during a rotation, space-separated, and is sent only
when the channel has a secret. The channel's own headers are sent too, but cannot
replace the protocol headers above; ``Content-Type`` is the format's, except that a
``template`` channel may set its own.

Invariants: runs synchronously (inside an rq job); never follows redirects (a POST
that is redirected is a configuration problem, and following it could leak the body);
never puts the URL, a header value or the secret into an error or log line.

Kept-alive connections (the worker's client, :mod:`workers.resources`): a receiver may
close an idle connection just as we send on it. A request that fails on a *reused*
connection before any response header arrived (reset, or closed with no answer) is sent
once more on a fresh connection; the receiver drops a repeat by ``webhook-id``. A
failure on a fresh connection, or after a response began, is the send's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

import httpx

from monitor.config import WebhookChannel
from monitor.signing import sign
from workers.delivery.errors import DeliveryError
from workers.delivery.formats import Payload, digest_payload, payload
from workers.delivery.render import one_line
from workers.model import Alert

__all__ = ["USER_AGENT", "parse_retry_after", "send_webhook", "send_webhook_digest"]


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

    The body is rendered here, at send time, in ``channel.format``. ``client`` lets a
    caller reuse connections; without it a client is opened and closed here. ``now`` is
    the clock for ``webhook-timestamp`` and for HTTP-date Retry-After.
    """
    _send(alert.id, payload(alert, channel), channel, client, now)


def send_webhook_digest(
    alerts: Sequence[Alert],
    digest_id: str,
    channel: WebhookChannel,
    *,
    client: httpx.Client | None = None,
    now: Callable[[], float] = time.time,
) -> None:
    """POST a digest of ``alerts`` as one request with ``webhook-id: digest_id``."""
    _send(digest_id, digest_payload(alerts, digest_id, channel), channel, client, now)


def send_payload(
    message_id: str,
    body: Payload,
    channel: WebhookChannel,
    *,
    client: httpx.Client | None = None,
    now: Callable[[], float] = time.time,
) -> None:
    """POST ready-made bytes (a notice, say) signed with ``webhook-id: message_id``."""
    _send(message_id, body, channel, client, now)


def _send(
    message_id: str,
    body: Payload,
    channel: WebhookChannel,
    client: httpx.Client | None,
    now: Callable[[], float],
) -> None:
    headers = _headers(message_id, channel, body, int(now()))
    try:
        if client is None:
            with httpx.Client(follow_redirects=False) as own:
                response = _post(own, channel, body.body, headers)
        else:
            response = _post(client, channel, body.body, headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(
            _CHANNEL, f"timed out after {channel.timeout:g}s ({type(exc).__name__})", True
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise DeliveryError(_CHANNEL, "unsupported URL scheme", False) from exc
    except httpx.TransportError as exc:
        # Refused, reset or dropped connections, DNS failures, TLS handshake failures.
        reason = f"{type(exc).__name__}: {_excerpt(_without_secrets(str(exc), channel))}"
        raise DeliveryError(_CHANNEL, reason, True) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = f"{type(exc).__name__}: {_excerpt(_without_secrets(str(exc), channel))}"
        raise DeliveryError(_CHANNEL, reason, False) from exc
    _check(response, now())


def _without_secrets(text: str, channel: WebhookChannel) -> str:
    """``text`` (an exception's message) with the channel's URL, header values and keys
    masked: an HTTP library may quote what it refused ("Illegal header value b'…'"), and
    the reason goes to the log, the attempts and the dead letter."""
    secrets = [channel.url.get_secret_value(), *channel.secrets]
    secrets += [value.get_secret_value() for value in channel.headers.values()]
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, secret.strip(), repr(secret.encode())[2:-1]}:
            if len(form) >= 4:
                text = text.replace(form, "**********")
    return text


def _headers(
    message_id: str, channel: WebhookChannel, body: Payload, timestamp: int
) -> httpx.Headers:
    headers = httpx.Headers({"User-Agent": USER_AGENT})
    headers.update({name: value.get_secret_value() for name, value in channel.headers.items()})
    # Protocol headers last: a channel's custom headers cannot replace them.
    headers["Content-Type"] = body.content_type
    headers["webhook-id"] = message_id
    headers["webhook-timestamp"] = str(timestamp)
    if channel.secrets:
        try:
            # During a key rotation, one signature per key, space-separated (the spec's
            # way to let receivers on the old and the new key both verify).
            signatures = [sign(key, message_id, timestamp, body.body) for key in channel.secrets]
        except ValueError as exc:
            # decode_secret's message names the problem, never the secret itself.
            raise DeliveryError(_CHANNEL, f"bad secret: {exc}", False) from exc
        headers["webhook-signature"] = " ".join(signatures)
    return headers


# Errors of a connection the receiver closed while it sat idle in the pool.
_STALE_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def _post(
    client: httpx.Client, channel: WebhookChannel, body: bytes, headers: httpx.Headers
) -> httpx.Response:
    """POST once; again on a fresh connection if a reused one was stale (module doc)."""
    events: list[str] = []
    try:
        return _request(client, channel, body, headers, events.append)
    except _STALE_ERRORS:
        # httpcore traces a TCP connect only for a new connection, and the end of the
        # response headers once any answer came: neither means a stale pooled one.
        if any(e.endswith(("connect_tcp.started", "response_headers.complete")) for e in events):
            raise
    with httpx.Client(follow_redirects=False) as fresh:
        return _request(fresh, channel, body, headers, events.append)


def _request(
    client: httpx.Client,
    channel: WebhookChannel,
    body: bytes,
    headers: httpx.Headers,
    seen: Callable[[str], None],
) -> httpx.Response:
    def trace(event: str, info: object) -> None:
        seen(event)

    return client.post(
        channel.url.get_secret_value(),
        content=body,
        headers=headers,
        timeout=channel.timeout,
        follow_redirects=False,
        extensions={"trace": trace},
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
