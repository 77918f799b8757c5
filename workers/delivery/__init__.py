"""Delivery of alerts to the configured channels: webhook, e-mail, log, Apprise.

Role: the public surface of the delivery step. Input: an :class:`~workers.model.Alert`
(or, for :func:`deliver_digest`, the alerts of one digest and its id), the configured
channel name and its :data:`~monitor.config.Channel` settings. Output: nothing when the
alert was handed over, a :class:`DeliveryError` otherwise. Retries are the caller's: an
error with ``transient=True`` is worth retrying (honouring ``retry_after``), one with
``transient=False`` goes to the dead letters at once.

Layout: one module per channel (:mod:`.webhook`, :mod:`.email`, :mod:`.log`,
:mod:`.apprise_channel`), the pure rendering they share (:mod:`.render` for one alert,
:mod:`.digest_render` for a digest, :mod:`.formats` for the webhook
payload formats) and the exception (:mod:`.errors`). A new channel is a function
matching :class:`Deliverer` (and one matching :class:`DigestDeliverer`) plus a case in
:func:`deliver` and :func:`deliver_digest`.

Invariants: delivery is at-least-once, so every channel sends something a receiver can
deduplicate (``webhook-id`` and ``Message-ID`` derive from ``alert.id``, or from the
digest id for a digest); secrets are read only where they are used and never reach a
log line or an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn, Protocol, TypeVar

import httpx

from monitor.config import AppriseChannel, Channel, EmailChannel, LogChannel, WebhookChannel
from workers.delivery.apprise_channel import send_apprise, send_apprise_digest
from workers.delivery.email import (
    build_digest_message,
    build_message,
    send_email,
    send_email_digest,
)
from workers.delivery.errors import DeliveryError
from workers.delivery.log import log_alert, log_digest
from workers.delivery.render import email_html, email_subject, email_text, webhook_body
from workers.delivery.webhook import send_webhook, send_webhook_digest
from workers.model import Alert

__all__ = [
    "Deliverer",
    "DeliveryError",
    "DigestDeliverer",
    "build_digest_message",
    "build_message",
    "deliver",
    "deliver_digest",
    "email_html",
    "email_subject",
    "email_text",
    "log_alert",
    "log_digest",
    "send_apprise",
    "send_apprise_digest",
    "send_email",
    "send_email_digest",
    "send_webhook",
    "send_webhook_digest",
    "webhook_body",
]

_C_contra = TypeVar("_C_contra", contravariant=True)


class Deliverer(Protocol[_C_contra]):
    """The plug point: hand one alert to one kind of channel, or raise DeliveryError."""

    def __call__(self, alert: Alert, channel: _C_contra, /) -> None: ...


class DigestDeliverer(Protocol[_C_contra]):
    """The plug point for digests: hand several alerts over as one message."""

    def __call__(self, alerts: Sequence[Alert], digest_id: str, channel: _C_contra, /) -> None: ...


# Checked by mypy: every channel function fits the plug point.
_WEBHOOK: Deliverer[WebhookChannel] = send_webhook
_EMAIL: Deliverer[EmailChannel] = send_email
_LOG: Deliverer[LogChannel] = log_alert
_APPRISE: Deliverer[AppriseChannel] = send_apprise
_WEBHOOK_DIGEST: DigestDeliverer[WebhookChannel] = send_webhook_digest
_EMAIL_DIGEST: DigestDeliverer[EmailChannel] = send_email_digest
_LOG_DIGEST: DigestDeliverer[LogChannel] = log_digest
_APPRISE_DIGEST: DigestDeliverer[AppriseChannel] = send_apprise_digest


def deliver(
    alert: Alert, channel_name: str, channel: Channel, *, http: httpx.Client | None = None
) -> None:
    """Deliver ``alert`` to one channel; errors carry ``channel_name`` as their channel.

    ``http``: the worker's long-lived client (:class:`workers.resources.Resources`); a
    client of its own per send would build a TLS context each time (~10 ms of CPU)."""
    try:
        match channel:
            case WebhookChannel():
                send_webhook(alert, channel, client=http)
            case EmailChannel():
                _EMAIL(alert, channel)
            case LogChannel():
                _LOG(alert, channel)
            case AppriseChannel():
                _APPRISE(alert, channel)
            case _:
                _unknown(channel_name, channel)
    except DeliveryError as exc:
        # Relabel with the configured name; keep the foreign exception as the cause.
        raise exc.for_channel(channel_name) from (exc.__cause__ or exc)


def deliver_digest(
    alerts: Sequence[Alert],
    digest_id: str,
    channel_name: str,
    channel: Channel,
    *,
    http: httpx.Client | None = None,
) -> None:
    """Deliver ``alerts`` as one digest message identified by ``digest_id``.

    ``digest_id`` must be stable across retries of one digest (it is the ``webhook-id``
    and the ``Message-ID``). An empty digest sends nothing.
    """
    if not alerts:
        return
    try:
        match channel:
            case WebhookChannel():
                send_webhook_digest(alerts, digest_id, channel, client=http)
            case EmailChannel():
                _EMAIL_DIGEST(alerts, digest_id, channel)
            case LogChannel():
                _LOG_DIGEST(alerts, digest_id, channel)
            case AppriseChannel():
                _APPRISE_DIGEST(alerts, digest_id, channel)
            case _:
                _unknown(channel_name, channel)
    except DeliveryError as exc:
        raise exc.for_channel(channel_name) from (exc.__cause__ or exc)


def _unknown(channel_name: str, channel: object) -> NoReturn:
    raise DeliveryError(channel_name, f"unknown channel type {type(channel).__name__}", False)
