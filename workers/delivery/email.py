"""E-mail delivery: a MIME message (text and HTML alternatives) sent with smtplib.

Role: :func:`build_message` turns an alert into an :class:`~email.message.EmailMessage`
(pure); :func:`send_email` hands it to the channel's SMTP server and maps every failure
to a :class:`~workers.delivery.errors.DeliveryError`.

Inputs: an :class:`~workers.model.Alert` (or a digest: alerts and a digest id, see
:func:`build_digest_message` and :func:`send_email_digest`) and its
:class:`~monitor.config.EmailChannel`. The SMTP password is a ``SecretStr`` read with
``get_secret_value()`` only at ``login``.

TLS (``smtp.starttls`` or implicit ``smtp.ssl``) always verifies the server's
certificate and host name against the system's CAs. The environment variable
``WIREWATCH_SMTP_CAFILE`` names a PEM file of further CAs to trust (a private CA, or a
test CA); it is read at each send, and an unreadable file is a permanent error.

Invariants:

* The message is deterministic for one alert: ``Message-ID`` is ``<{alert.id}@wirewatch>``
  and ``Date`` is the alert's creation time, so a retried delivery is the same message
  and mail systems can collapse duplicates. A digest's ``Message-ID`` is
  ``<{digest_id}@wirewatch>`` and its ``Date`` the newest alert's creation time.
* The subject is one line (see :func:`~workers.delivery.render.email_subject`); the
  envelope recipients are exactly ``channel.to``, never taken from the headers.
* A follow-up or update (``alert.thread_id`` set) carries ``In-Reply-To`` and
  ``References`` naming the Message-ID of the rule's first alert on the story, and the
  subject ``Re: `` + that alert's subject, so mail clients thread them.
* Failures: refused, dropped or timed-out connections and 4xx replies are transient;
  5xx replies, a missing STARTTLS/AUTH extension and a certificate that does not verify
  are permanent. When the server accepts some recipients and refuses others the send
  counts as done (a retry would mail the accepted ones twice); the refusals are logged.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from email.message import EmailMessage
from email.utils import format_datetime

import structlog

from monitor.config import EmailChannel, SmtpSettings
from workers.delivery.digest_render import digest_html, digest_rules, digest_text, digest_title
from workers.delivery.errors import DeliveryError
from workers.delivery.render import email_html, email_subject, email_text, one_line
from workers.model import Alert

__all__ = [
    "CAFILE_ENV",
    "build_digest_message",
    "build_message",
    "message_id",
    "send_email",
    "send_email_digest",
    "tls_context",
]

_CHANNEL = "email"
CAFILE_ENV = "WIREWATCH_SMTP_CAFILE"


def message_id_for(local: str) -> str:
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in local)
    return f"<{safe}@wirewatch>"


def message_id(alert: Alert) -> str:
    """The Message-ID of an alert's mail: stable, so duplicates are recognisable."""
    return message_id_for(alert.id)


def new_message(channel: EmailChannel, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = channel.from_
    message["To"] = ", ".join(channel.to)
    message["Subject"] = subject
    # RFC 3834: automatic mail; keeps vacation responders from answering it.
    message["Auto-Submitted"] = "auto-generated"
    return message


def build_message(alert: Alert, channel: EmailChannel) -> EmailMessage:
    """The complete message for one alert: headers, a text part and an HTML alternative."""
    message = new_message(channel, email_subject(alert))
    message["Date"] = format_datetime(alert.created)
    message["Message-ID"] = message_id(alert)
    if alert.thread_id:  # a follow-up or update: in the thread of the rule's first alert
        message["In-Reply-To"] = message_id_for(alert.thread_id)
        message["References"] = message_id_for(alert.thread_id)
    message["X-Wirewatch-Rule"] = one_line(alert.rule_id)
    message["X-Wirewatch-Kind"] = alert.kind
    message.set_content(email_text(alert))
    message.add_alternative(email_html(alert), subtype="html")
    return message


def build_digest_message(
    alerts: Sequence[Alert], digest_id: str, channel: EmailChannel
) -> EmailMessage:
    """One message for a digest: every alert listed in a text and an HTML part."""
    message = new_message(channel, digest_title(alerts))
    if alerts:
        message["Date"] = format_datetime(max(alert.created for alert in alerts))
    message["Message-ID"] = message_id_for(digest_id)
    message["X-Wirewatch-Rule"] = ", ".join(digest_rules(alerts))
    message.set_content(digest_text(alerts, digest_id))
    message.add_alternative(digest_html(alerts, digest_id), subtype="html")
    return message


def tls_context() -> ssl.SSLContext:
    """A verifying client context: system CAs plus ``$WIREWATCH_SMTP_CAFILE`` if set."""
    context = ssl.create_default_context()
    cafile = os.environ.get(CAFILE_ENV)
    if cafile:
        try:
            context.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            # A configuration problem: no retry will make the file readable.
            raise DeliveryError(
                _CHANNEL, f"cannot load {CAFILE_ENV}: {type(exc).__name__}", False
            ) from exc
    return context


def send_email(alert: Alert, channel: EmailChannel) -> None:
    """Send the alert's message through ``channel.smtp``; raise DeliveryError on failure."""
    send_message(build_message(alert, channel), channel)


def send_email_digest(alerts: Sequence[Alert], digest_id: str, channel: EmailChannel) -> None:
    """Send one message for a digest of ``alerts``; raise DeliveryError on failure."""
    send_message(build_digest_message(alerts, digest_id, channel), channel)


def send_message(message: EmailMessage, channel: EmailChannel) -> None:
    settings = channel.smtp
    context = tls_context() if settings.starttls or settings.ssl else None
    try:
        with _session(settings, context) as client:
            if settings.starttls and not settings.ssl:
                client.starttls(context=context)
            if settings.username:
                client.login(settings.username, settings.password.get_secret_value())
            refused = client.send_message(message, from_addr=channel.from_, to_addrs=channel.to)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        transient = all(400 <= code < 500 for code in codes)
        raise DeliveryError(
            _CHANNEL,
            "every recipient refused: " + _refusals(exc.recipients),
            transient,
            status=max(codes, default=None),
        ) from exc
    except smtplib.SMTPResponseException as exc:
        # Covers refused senders and data, failed AUTH (535) and greetings other than 220.
        code = exc.smtp_code
        text = _reply_text(exc.smtp_error)
        raise DeliveryError(
            _CHANNEL, f"SMTP {code} {text}".rstrip(), 400 <= code < 500, status=code
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(_CHANNEL, f"server lacks an extension: {exc}", False) from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise DeliveryError(_CHANNEL, f"server disconnected: {exc}", True) from exc
    except smtplib.SMTPException as exc:
        # e.g. "No suitable authentication method found": the server and config disagree.
        raise DeliveryError(_CHANNEL, f"{type(exc).__name__}: {exc}", False) from exc
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(_CHANNEL, f"TLS certificate rejected: {exc.reason}", False) from exc
    except TimeoutError as exc:
        raise DeliveryError(_CHANNEL, f"timed out after {settings.timeout:g}s", True) from exc
    except OSError as exc:
        # Refused or reset connections, DNS failures, TLS errors other than verification.
        raise DeliveryError(_CHANNEL, f"{type(exc).__name__}: {exc}", True) from exc
    if refused:
        structlog.get_logger().warning(
            "email_recipients_refused",
            message_id=message["Message-ID"],
            refused=_refusals(refused),
            accepted=len(channel.to) - len(refused),
        )


@contextmanager
def _session(settings: SmtpSettings, context: ssl.SSLContext | None) -> Iterator[smtplib.SMTP]:
    """An open, greeted connection (implicit TLS when ``settings.ssl``), always closed.

    Unlike ``with smtplib.SMTP(...)``, a failed QUIT after the message was accepted is
    ignored: the mail is on its way, and reporting an error would send it again.
    """
    client: smtplib.SMTP
    if settings.ssl:
        client = smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            timeout=settings.timeout,
            context=context,
        )
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    usable = True
    try:
        yield client
    except (OSError, smtplib.SMTPServerDisconnected):
        usable = False  # timed out or dropped: a QUIT would only wait again
        raise
    finally:
        if usable:
            with suppress(smtplib.SMTPException, OSError):
                client.quit()
        client.close()


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return one_line(text)[:200]


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address}: {code} {_reply_text(reply)}" for address, (code, reply) in refused.items()
    )
