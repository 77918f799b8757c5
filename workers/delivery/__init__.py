"""Delivery of alerts to the configured channels: webhook, e-mail, log.

Role: the public surface of the delivery step. Input: an :class:`~workers.model.Alert`,
the configured channel name and its :data:`~monitor.config.Channel` settings. Output:
nothing when the alert was handed over, a :class:`DeliveryError` otherwise. Retries are
the caller's (an rq ``Retry`` in ``workers.jobs``): an error with ``transient=True`` is
worth retrying, one with ``transient=False`` goes to the dead letters at once.

Layout: one module per channel (:mod:`.webhook`, :mod:`.email`, :mod:`.log`), the pure
rendering they share (:mod:`.render`) and the exception (:mod:`.errors`). A new channel
is a function matching :class:`Deliverer` plus a case in :func:`deliver`.

Invariants: delivery is at-least-once, so every channel sends something a receiver can
deduplicate (``webhook-id`` and ``Message-ID`` derive from ``alert.id``); secrets are read
only where they are used and never reach a log line or an error.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from monitor.config import Channel, EmailChannel, LogChannel, WebhookChannel
from workers.delivery.email import build_message, send_email
from workers.delivery.errors import DeliveryError
from workers.delivery.log import log_alert
from workers.delivery.render import email_html, email_subject, email_text, webhook_body
from workers.delivery.webhook import send_webhook
from workers.model import Alert

__all__ = [
    "Deliverer",
    "DeliveryError",
    "build_message",
    "deliver",
    "email_html",
    "email_subject",
    "email_text",
    "log_alert",
    "send_email",
    "send_webhook",
    "webhook_body",
]

_C_contra = TypeVar("_C_contra", contravariant=True)


class Deliverer(Protocol[_C_contra]):
    """The plug point: hand one alert to one kind of channel, or raise DeliveryError."""

    def __call__(self, alert: Alert, channel: _C_contra, /) -> None: ...


# Checked by mypy: every channel function fits the plug point.
_WEBHOOK: Deliverer[WebhookChannel] = send_webhook
_EMAIL: Deliverer[EmailChannel] = send_email
_LOG: Deliverer[LogChannel] = log_alert


def deliver(alert: Alert, channel_name: str, channel: Channel) -> None:
    """Deliver ``alert`` to one channel; errors carry ``channel_name`` as their channel."""
    try:
        match channel:
            case WebhookChannel():
                _WEBHOOK(alert, channel)
            case EmailChannel():
                _EMAIL(alert, channel)
            case LogChannel():
                _LOG(alert, channel)
            case _:
                raise DeliveryError(
                    channel_name, f"unknown channel type {type(channel).__name__}", False
                )
    except DeliveryError as exc:
        # Relabel with the configured name; keep the foreign exception as the cause.
        raise exc.for_channel(channel_name) from (exc.__cause__ or exc)
