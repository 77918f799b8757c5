"""When to poll a feed next: the pure scheduling decision.

Role: given a feed's interval and its run of consecutive failures, say how many seconds
to wait before the next poll. No clock and no global random state: the random source
is injected, so tests (and hypothesis) can pin it.

Inputs: ``interval`` (the feed's configured seconds between polls, ≥ 1 s and honoured
as given: tests and demos use 1 s), ``failures`` (consecutive failed polls, 0 after a
success), ``max_backoff`` (cap on the delay after failures), ``retry_after`` (the
server's ``Retry-After`` in seconds, if any), ``rand`` (returns a float in [0, 1)).

Output: a delay in seconds.

Invariants (property-tested):

- after a success the delay is exactly ``interval``, or ``Retry-After`` if that is longer
  (bounded as below);
- after failures the delay is capped exponential backoff with "equal jitter": the cap
  doubles with each failure, ``interval · 2^failures``, bounded by ``max_backoff``, and
  the delay is uniform in the upper half of the cap, so feeds that failed together (a
  network blip) spread out instead of retrying in lockstep;
- always ``interval ≤ delay ≤ max(interval, max_backoff)``: a feed is never polled more
  often than configured, and never parked for longer than the backoff cap — no feed is
  ever disabled for good;
- a ``Retry-After`` is honoured up to that same upper bound.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# 2**40 intervals is beyond any max_backoff anyone configures; the cap keeps the float
# arithmetic finite however long a feed has been failing.
_MAX_EXPONENT = 40


def next_delay(
    interval: float,
    failures: int,
    *,
    max_backoff: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next poll; see the module docstring for the bounds."""
    upper = max(interval, max_backoff)
    if failures <= 0:
        delay = interval
    else:
        cap = min(upper, interval * 2.0 ** min(failures, _MAX_EXPONENT))
        delay = max(interval, cap * (0.5 + 0.5 * rand()))
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, upper)
    return delay
