"""The one exception every delivery channel raises: :class:`DeliveryError`.

Role: tell the job that ran a delivery whether trying again can help. Channel code wraps
every foreign exception (httpx, smtplib, ssl, OSError) at its edge with ``raise
DeliveryError(...) from exc``, so callers catch exactly one type::

    Exception
     └── DeliveryError            channel, reason, transient, status, retry_after
           transient=True         5xx, 408, 429, timeouts, refused or dropped
                                  connections, SMTP 4xx replies: retry with backoff
           transient=False        other 4xx (a 404 is not a success), 3xx, SMTP 5xx
                                  replies, bad configuration: record as dead now

Invariants: ``reason`` is safe to log. It never holds a secret, a request header or
the target URL (webhook URLs often carry tokens in their path); it may hold a short,
sanitised excerpt of what the remote side answered. ``retry_after`` is in seconds,
never negative, and only set when the remote side asked for a delay.
"""

from __future__ import annotations

__all__ = ["DeliveryError"]


class DeliveryError(Exception):
    """A delivery that did not happen; ``transient`` says whether a retry may succeed.

    ``channel`` is the configured channel name once :func:`workers.delivery.deliver`
    has seen the error, and the channel type (``"webhook"``, ``"email"``) before that.
    ``status`` is the HTTP status or SMTP reply code, when there was one.
    """

    def __init__(
        self,
        channel: str,
        reason: str,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        # All fields in ``args``, so the error pickles and copies like any exception.
        super().__init__(channel, reason, transient, status, retry_after)
        self.channel = channel
        self.reason = reason
        self.transient = transient
        self.status = status
        self.retry_after = None if retry_after is None else max(0.0, retry_after)

    def __str__(self) -> str:
        kind = "transient" if self.transient else "permanent"
        text = f"{self.channel}: {self.reason} ({kind}"
        if self.status is not None:
            text += f", status {self.status}"
        if self.retry_after is not None:
            text += f", retry after {self.retry_after:g}s"
        return text + ")"

    def __repr__(self) -> str:
        return (
            f"DeliveryError({self.channel!r}, {self.reason!r}, transient={self.transient!r}, "
            f"status={self.status!r}, retry_after={self.retry_after!r})"
        )

    def for_channel(self, channel: str) -> DeliveryError:
        """The same error, labelled with a channel name (the cause is the caller's to set)."""
        return DeliveryError(
            channel,
            self.reason,
            transient=self.transient,
            status=self.status,
            retry_after=self.retry_after,
        )

    def to_json(self) -> dict[str, object]:
        """Structured fields for a log line or a dead-letter record."""
        return {
            "channel": self.channel,
            "reason": self.reason,
            "transient": self.transient,
            "status": self.status,
            "retry_after": self.retry_after,
        }
