"""When to try a failed delivery again: exponential backoff with jitter, obeying the
receiver's ``Retry-After``.

Pure: the caller passes the attempt number and a random source. With the defaults
(first 2 s, × 3, cap 30 min, ±20 %), retries come after about 2 s, 6 s, 18 s, 54 s…
so a blip costs seconds, and a receiver down for an hour is still reached.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from monitor.config_channels import RetrySettings

# A receiver may ask for a long pause (Retry-After), and we obey it, but not beyond this:
# a hostile or broken header must not park an alert for days.
MAX_RETRY_AFTER_S = 6 * 3600.0


def retry_delay(
    policy: RetrySettings,
    failed_attempts: int,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``failed_attempts``-th failure (1 for the first)."""
    exponent = max(failed_attempts - 1, 0)
    base = min(policy.max_delay, policy.first_delay * policy.factor**exponent)
    delay = base * (1 + policy.jitter * (2 * rand() - 1))
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return max(delay, 0.0)


def should_retry(policy: RetrySettings, failed_attempts: int, transient: bool) -> bool:
    """Transient failures are retried until ``policy.attempts`` tries in all."""
    return transient and failed_attempts < policy.attempts
