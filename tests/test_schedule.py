"""next_delay: success at the interval, capped exponential backoff with jitter after failures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.schedule import next_delay


def test_success_waits_exactly_the_interval() -> None:
    assert next_delay(1, 0, max_backoff=3600, rand=lambda: 0.9) == 1
    assert next_delay(300, 0, max_backoff=3600, rand=lambda: 0.0) == 300


def test_backoff_doubles_per_failure_and_is_capped() -> None:
    top = [next_delay(10, n, max_backoff=100, rand=lambda: 0.999999) for n in range(1, 7)]
    assert top == pytest.approx([20, 40, 80, 100, 100, 100], rel=1e-5)
    low = [next_delay(10, n, max_backoff=100, rand=lambda: 0.0) for n in range(1, 7)]
    assert low == [10, 20, 40, 50, 50, 50]


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert next_delay(60, 0, max_backoff=3600, retry_after=600) == 600
    assert next_delay(60, 1, max_backoff=3600, retry_after=86400, rand=lambda: 0.5) == 3600
    assert next_delay(60, 0, max_backoff=3600, retry_after=5) == 60


def test_an_interval_above_the_cap_is_still_honoured() -> None:
    assert next_delay(7200, 3, max_backoff=60, rand=lambda: 0.5) == 7200


@given(
    interval=st.floats(min_value=1, max_value=86400),
    failures=st.integers(min_value=0, max_value=10_000),
    max_backoff=st.floats(min_value=1, max_value=7 * 86400),
    retry_after=st.none() | st.floats(min_value=0, max_value=10**9),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_delay_stays_within_bounds(
    interval: float, failures: int, max_backoff: float, retry_after: float | None, r: float
) -> None:
    delay = next_delay(
        interval, failures, max_backoff=max_backoff, retry_after=retry_after, rand=lambda: r
    )
    assert interval <= delay <= max(interval, max_backoff)
    if failures == 0 and retry_after is None:
        assert delay == interval


@given(
    interval=st.floats(min_value=1, max_value=600),
    failures=st.integers(min_value=0, max_value=60),
    max_backoff=st.floats(min_value=1, max_value=86400),
)
def test_more_failures_never_shorten_the_worst_case(
    interval: float, failures: int, max_backoff: float
) -> None:
    def worst(n: int) -> float:
        return next_delay(interval, n, max_backoff=max_backoff, rand=lambda: 0.999999)

    assert worst(failures + 1) >= worst(failures)
