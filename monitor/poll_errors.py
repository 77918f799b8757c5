"""The poller's exception tree, in one place.

::

    PollError                 a poll of one feed failed; ``reason`` is readable text
    ├── FetchError            the bytes could not be fetched (network, HTTP status, size cap)
    └── FeedParseError        the bytes are not a feed (HTML page, garbage, broken XML)

Every error carries ``reason`` (what an operator reads in the log) and ``transient``
(whether the same request may succeed later). The poller never disables a feed on
either kind: both back off (see :mod:`monitor.schedule`); ``transient`` is information
for logs and metrics. Foreign exceptions (aiohttp, OSError, feedparser's) are wrapped
at the module edge with ``raise … from exc``.

The errors pickle cleanly, because :class:`FeedParseError` is raised inside the parse
process and travels back through a ``ProcessPoolExecutor``.
"""

from __future__ import annotations

from typing import Any


class PollError(Exception):
    """A poll of one feed failed; ``reason`` says why in words an operator can act on."""

    transient: bool = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class FetchError(PollError):
    """Fetching failed: DNS, connection, timeout, TLS, an HTTP error status, the size cap.

    ``status`` is the HTTP status when there was a response; ``retry_after`` is the
    server's ``Retry-After`` in seconds when it sent one (429, 503).
    """

    def __init__(
        self,
        reason: str,
        *,
        transient: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_fetch_error, (self.reason, self.transient, self.status, self.retry_after))


class FeedParseError(PollError):
    """The body is not a feed we can read; the same bytes will fail the same way."""

    transient = False


def _rebuild_fetch_error(
    reason: str, transient: bool, status: int | None, retry_after: float | None
) -> FetchError:
    return FetchError(reason, transient=transient, status=status, retry_after=retry_after)
