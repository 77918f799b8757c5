"""When to poll a feed next: the pure scheduling decisions.

Role: no clock, no I/O and no global random state (the random source is injected), so
tests and hypothesis can pin everything. :mod:`monitor.feed_poll` feeds it what a poll
saw; :mod:`monitor.shared_schedule` stores the answer in Redis.

Three decisions:

1. **The learned interval** (:func:`learn`). A feed's :class:`Cadence` holds its current
   interval and its publishing rate: new items seen over seconds watched, both decaying
   over a few intervals (an exponentially weighted rate). After each successful poll
   (not the first: a first poll finds the whole backlog "new") the poll's new items and
   the seconds since the last success are added, and the interval moves towards
   ``1 / rate`` — about one new item per poll — by at most a factor of 2 per poll. A quiet
   feed drifts towards its upper bound, a busy one towards its lower bound.
2. **The bounds** (:func:`interval_bounds`): a feed's own ``min_interval`` /
   ``max_interval`` when set, else the global ``poller.min_interval`` / ``max_interval``
   widened to include the configured interval, which is where learning starts. An
   operator's explicit ``interval: 1`` is therefore honoured even below the global floor.
3. **The delay** (:func:`success_delay`, :func:`next_delay`). After a success: the learned
   interval, raised to the feed's own hints (RSS ``<ttl>``, ``Cache-Control: max-age``,
   ``Expires``; :mod:`monitor.fetch_headers` reads the headers) but never past the upper
   bound, then raised to ``Retry-After`` up to the
   backoff cap. After failures: capped exponential backoff with "equal jitter" from the
   learned interval; ``Retry-After`` (429, 503) is honoured up to the same cap.

Invariants (property-tested):

- a learned interval always lies within its bounds, whatever the inputs;
- a failed feed's delay is within ``[interval, max(interval, max_backoff)]``: never polled
  more often than its interval, never parked longer than the cap — no feed is ever
  disabled for good (a feed gone with HTTP 410 is re-checked every ``gone_interval``);
- after a success with no hints the delay is exactly the learned interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# 2**40 intervals is beyond any max_backoff anyone configures; the cap keeps the float
# arithmetic finite however long a feed has been failing.
_MAX_EXPONENT = 40
# The publishing rate forgets with a time constant of this many current intervals: about
# the last few polls count, so one burst of breaking news moves the interval but does
# not pin it.
HORIZON = 5.0
# How far one poll may move the interval (×/÷).
MAX_STEP = 2.0


@dataclass(frozen=True, slots=True)
class Bounds:
    """The closed range ``[low, high]`` a learned interval stays in."""

    low: float
    high: float

    def clamp(self, value: float) -> float:
        return min(self.high, max(self.low, value))


@dataclass(frozen=True, slots=True)
class Cadence:
    """What a feed's history taught: its current interval, and its publishing rate as
    time-decayed counts — ``events`` new items seen over ``exposure`` seconds watched."""

    interval: float
    events: float
    exposure: float

    @property
    def rate(self) -> float:
        """New items per second."""
        return self.events / self.exposure if self.exposure > 0 else 0.0


def interval_bounds(
    start: float,
    *,
    feed_min: float | None,
    feed_max: float | None,
    global_min: float,
    global_max: float,
) -> Bounds:
    """The bounds of a feed whose configured interval is ``start``; see the docstring."""
    low = feed_min if feed_min is not None else min(start, global_min)
    high = feed_max if feed_max is not None else max(start, global_max)
    return Bounds(low, max(low, high))


def initial_cadence(start: float, bounds: Bounds) -> Cadence:
    """Before any history: the configured interval, and a prior of one item per interval."""
    interval = bounds.clamp(start)
    return Cadence(interval, 1.0, interval)


# More new items than any feed could hold in its fading window: a damaged history.
MAX_EVENTS = 1e9


def learn(cadence: Cadence, *, new_items: int, elapsed: float | None, bounds: Bounds) -> Cadence:
    """The cadence after a successful poll that found ``new_items`` in ``elapsed`` seconds
    since the previous success (``None``: no previous success, nothing to learn)."""
    current = bounds.clamp(cadence.interval) if math.isfinite(cadence.interval) else bounds.high
    events, exposure = cadence.events, cadence.exposure
    if not (
        math.isfinite(events)
        and 0 <= events <= MAX_EVENTS
        and math.isfinite(exposure)
        and exposure >= 0
        and math.isfinite(events / exposure if exposure > 0 else 0.0)
    ):
        events, exposure = 1.0, current  # a damaged history: start from the prior again
    if elapsed is None or not elapsed > 0 or not math.isfinite(elapsed):
        return Cadence(current, events, exposure)
    # Older observations fade over HORIZON intervals. Weighting by time, not by poll,
    # means a poll right after another (nothing could have happened) teaches nothing,
    # while five items in a few seconds teach a lot.
    decay = math.exp(-elapsed / (HORIZON * current))
    events = events * decay + max(0, new_items)
    exposure = exposure * decay + max(elapsed, 1e-3)  # keeps the rate finite
    rate = events / exposure
    target = 1.0 / rate if rate > 0 else math.inf
    stepped = min(max(target, current / MAX_STEP), current * MAX_STEP)
    return Cadence(bounds.clamp(stepped), events, exposure)


def slow_down(cadence: Cadence, bounds: Bounds) -> Cadence:
    """The server said "too many requests" (429): double the learned interval."""
    return Cadence(bounds.clamp(cadence.interval * MAX_STEP), cadence.events, cadence.exposure)


def success_delay(
    interval: float,
    *,
    hints: Iterable[float | None],
    bounds: Bounds,
    max_backoff: float,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after a successful poll: ``interval`` raised to the feed's caching
    hints (seconds; ``None`` = no hint) up to ``bounds.high``, then to ``Retry-After``."""
    floor = max((hint for hint in hints if hint is not None and math.isfinite(hint)), default=0.0)
    delay = max(interval, min(floor, bounds.high))
    return next_delay(delay, 0, max_backoff=max_backoff, retry_after=retry_after)


def next_delay(
    interval: float,
    failures: int,
    *,
    max_backoff: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next poll after ``failures`` consecutive failures (0: a success).

    The backoff cap doubles with each failure, ``interval · 2^failures``, bounded by
    ``max_backoff``; the delay is uniform in the upper half of the cap ("equal jitter"),
    so feeds that failed together (a network blip) spread out instead of retrying in
    lockstep. Always ``interval ≤ delay ≤ max(interval, max_backoff)``.
    """
    upper = max(interval, max_backoff)
    if failures <= 0:
        delay = interval
    else:
        cap = min(upper, interval * 2.0 ** min(failures, _MAX_EXPONENT))
        delay = max(interval, cap * (0.5 + 0.5 * rand()))
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, upper)
    return delay
