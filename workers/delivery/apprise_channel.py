"""Apprise delivery: Slack, Teams, Telegram, Discord, ntfy, Matrix and the rest.

Role: the I/O shell for ``type: apprise`` channels. Input: an alert (or a digest) and
its :class:`~monitor.config.AppriseChannel`, whose ``urls`` are Apprise URLs
(``ntfy://topic``, ``tgram://token/chat``, ``json://host/path`` …). Output: nothing when
every URL accepted the notification, else a :class:`~.errors.DeliveryError`.

Apprise is an optional dependency (``pip install 'wirewatch[apprise]'``), imported
only when an Apprise channel sends; without it the error is permanent.

Message: title ``[wirewatch] <rule>: <headline>`` (a digest: ``[wirewatch] digest: N
alerts (rules)``), body the text rendering of :mod:`.render` (:mod:`.digest_render`),
sent as plain text.

Failures: a URL Apprise cannot parse is permanent. ``notify()`` says only that some
service failed, not why, so any failure is transient and the retry policy decides;
when several URLs are configured, a retry notifies the ones that succeeded again.

Invariants: URLs hold tokens: they never reach an error or log line (URLs are named
by position, ``url #2``); runs synchronously inside an rq job.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from monitor.config import AppriseChannel
from workers.delivery.digest_render import digest_text, digest_title
from workers.delivery.errors import DeliveryError
from workers.delivery.render import email_subject, email_text
from workers.model import Alert

__all__ = ["MISSING", "send_apprise", "send_apprise_digest"]

_CHANNEL = "apprise"
MISSING = "apprise is not installed: pip install 'wirewatch[apprise]'"


def send_apprise(alert: Alert, channel: AppriseChannel) -> None:
    """Notify every URL of ``channel`` about ``alert``; raise DeliveryError on failure."""
    notify(channel, email_subject(alert), email_text(alert))


def send_apprise_digest(alerts: Sequence[Alert], digest_id: str, channel: AppriseChannel) -> None:
    """Notify every URL of ``channel`` once about a digest of ``alerts``."""
    notify(channel, digest_title(alerts), digest_text(alerts, digest_id))


def notify(channel: AppriseChannel, title: str, body: str) -> None:
    with warnings.catch_warnings():
        # Apprise's e-mail plugin imports the stdlib ``imghdr`` (deprecated in 3.11,
        # gone in 3.13) when its plugins load; not ours to fix, and not worth a warning.
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        try:
            import apprise  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            raise DeliveryError(_CHANNEL, MISSING, False) from exc
        notifier = apprise.Apprise()
        for number, url in enumerate(channel.urls, 1):
            if not notifier.add(url.get_secret_value()):
                raise DeliveryError(_CHANNEL, f"url #{number} is not a URL Apprise knows", False)
    result = notifier.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
    if not result:
        raise DeliveryError(_CHANNEL, _failure(result, len(channel.urls)), True)


def _failure(result: Any, total: int) -> str:
    """Why ``notify`` failed, as far as Apprise says (recent versions return a result)."""
    failed = getattr(result, "failed_count", None)
    status = getattr(getattr(result, "status", None), "name", None)
    if failed is None:  # an older Apprise returns a bare False
        return "notification failed"
    reason = f"{failed} of {total} notification(s) failed"
    return f"{reason} ({status.lower()})" if status else reason
