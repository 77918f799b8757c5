"""The poller's exception tree, in one place.

::

    PollError                 a poll of one feed failed; ``reason`` is readable text
    ├── FetchError            the bytes could not be fetched (network, HTTP status, size cap)
    └── FeedParseError        the bytes are not a feed (garbage, broken XML, bad JSON)
        └── NotAFeed          the bytes are an HTML page; ``feed_urls`` are the feeds it
                              advertises with ``<link rel="alternate">`` (maybe none)

Every error carries ``reason`` (what an operator reads in the log and in the feed's
health) and ``transient`` (whether the same request may succeed later). The poller never
disables a feed on either kind: both back off (see :mod:`monitor.schedule`);
``transient`` is information for logs and metrics. Foreign exceptions (aiohttp, OSError,
feedparser's) are wrapped at the module edge with ``raise … from exc``.

HTTP 410 is a ``FetchError`` with ``status == 410`` (``gone`` is true), not a result: a
feed that is gone has no body to parse. ``FetchError.permanent_redirect_to`` carries the
new URL when a 301/308 led to the failing response.

The errors pickle cleanly, because :class:`FeedParseError` and :class:`NotAFeed` are
raised inside the parse process and travel back pickled (:mod:`monitor.parse_pool`).
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
        permanent_redirect_to: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.permanent_redirect_to = permanent_redirect_to

    @property
    def gone(self) -> bool:
        """The publisher says the feed is gone for good (HTTP 410)."""
        return self.status == 410

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_fetch_error,
            (
                self.reason,
                self.transient,
                self.status,
                self.retry_after,
                self.permanent_redirect_to,
            ),
        )


class FeedParseError(PollError):
    """The body is not a feed we can read; the same bytes will fail the same way."""

    transient = False


class NotAFeed(FeedParseError):
    """The body is an HTML page, not a feed.

    ``feed_urls`` are the absolute URLs of the feeds the page advertises
    (``<link rel="alternate" type="application/rss+xml|atom+xml|feed+json">``), best
    first; empty when it advertises none.
    """

    def __init__(self, reason: str, feed_urls: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.feed_urls = feed_urls

    def __reduce__(self) -> tuple[Any, ...]:
        return (NotAFeed, (self.reason, self.feed_urls))


def _rebuild_fetch_error(
    reason: str,
    transient: bool,
    status: int | None,
    retry_after: float | None,
    permanent_redirect_to: str | None = None,
) -> FetchError:
    return FetchError(
        reason,
        transient=transient,
        status=status,
        retry_after=retry_after,
        permanent_redirect_to=permanent_redirect_to,
    )
