"""The pure schedule: backoff after failures, learned intervals, the feed's hints."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.schedule import (
    Bounds,
    Cadence,
    initial_cadence,
    interval_bounds,
    learn,
    next_delay,
    slow_down,
    success_delay,
)


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


# -- adaptive intervals ------------------------------------------------------------------

BOUNDS = Bounds(60, 3600)


def test_bounds_widen_to_the_configured_interval_unless_the_feed_sets_its_own() -> None:
    glob = {"global_min": 60.0, "global_max": 3600.0}
    assert interval_bounds(300, feed_min=None, feed_max=None, **glob) == Bounds(60, 3600)
    assert interval_bounds(1, feed_min=None, feed_max=None, **glob) == Bounds(1, 3600)
    assert interval_bounds(7200, feed_min=None, feed_max=None, **glob) == Bounds(60, 7200)
    assert interval_bounds(300, feed_min=120, feed_max=600, **glob) == Bounds(120, 600)


def test_no_learning_without_a_previous_success() -> None:
    start = initial_cadence(300, BOUNDS)
    assert learn(start, new_items=40, elapsed=None, bounds=BOUNDS) == start


def test_a_quiet_feed_slows_down_and_a_busy_one_speeds_up() -> None:
    quiet = busy = initial_cadence(300, BOUNDS)
    for _ in range(30):
        quiet = learn(quiet, new_items=0, elapsed=quiet.interval, bounds=BOUNDS)
        busy = learn(busy, new_items=10, elapsed=busy.interval, bounds=BOUNDS)
    assert quiet.interval == 3600
    assert busy.interval == 60


def test_one_poll_moves_the_interval_by_at_most_a_factor_of_two() -> None:
    start = initial_cadence(300, BOUNDS)
    assert learn(start, new_items=1000, elapsed=300, bounds=BOUNDS).interval == 150
    assert learn(start, new_items=0, elapsed=1e9, bounds=BOUNDS).interval == 600


def test_a_poll_right_after_another_teaches_nothing() -> None:
    busy = Cadence(60, events=10, exposure=60)
    assert learn(busy, new_items=0, elapsed=0.001, bounds=BOUNDS).interval == 60


def test_429_doubles_the_interval_within_bounds() -> None:
    assert slow_down(Cadence(300, 1, 100), BOUNDS).interval == 600
    assert slow_down(Cadence(3000, 1, 100), BOUNDS).interval == 3600


def test_hints_raise_the_delay_up_to_the_upper_bound_only() -> None:
    def delay(*hints: float | None, retry_after: float | None = None) -> float:
        return success_delay(
            300, hints=hints, bounds=BOUNDS, max_backoff=7200, retry_after=retry_after
        )

    assert delay() == 300
    assert delay(None, 60) == 300  # a hint never makes us poll more often
    assert delay(1800) == 1800  # Cache-Control: max-age=1800, or <ttl>30</ttl>
    assert delay(86400) == 3600  # the operator's max_interval wins over a hint
    assert delay(retry_after=5000) == 5000  # Retry-After: up to the backoff cap
    assert delay(retry_after=10**6) == 7200


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    start=st.floats(min_value=1, max_value=86400),
    feed_min=st.none() | st.floats(min_value=1, max_value=3600),
    span=st.floats(min_value=0, max_value=86400),
    global_min=st.floats(min_value=1, max_value=3600),
    global_span=st.floats(min_value=0, max_value=86400),
    history=st.lists(
        st.tuples(st.integers(min_value=-5, max_value=10**6), st.none() | finite), max_size=40
    ),
    previous=st.none() | st.tuples(finite, finite, finite),
)
def test_a_learned_interval_stays_within_its_bounds(
    start: float,
    feed_min: float | None,
    span: float,
    global_min: float,
    global_span: float,
    history: list[tuple[int, float | None]],
    previous: tuple[float, float, float] | None,
) -> None:
    bounds = interval_bounds(
        start,
        feed_min=feed_min,
        feed_max=None if feed_min is None else feed_min + span,
        global_min=global_min,
        global_max=global_min + global_span,
    )
    assert bounds.low <= bounds.high
    cadence = initial_cadence(start, bounds) if previous is None else Cadence(*previous)
    for new_items, elapsed in history:
        cadence = learn(cadence, new_items=new_items, elapsed=elapsed, bounds=bounds)
        assert bounds.low <= cadence.interval <= bounds.high
        assert math.isfinite(cadence.rate) and cadence.rate >= 0


@given(
    gap=st.floats(min_value=1, max_value=86400),
    start=st.floats(min_value=60, max_value=3600),
)
def test_the_interval_settles_near_the_publishing_gap(gap: float, start: float) -> None:
    # A feed that publishes one item every ``gap`` seconds, polled at its learned interval.
    cadence = initial_cadence(start, BOUNDS)
    backlog = 0.0
    for _ in range(200):
        backlog += cadence.interval / gap
        new = int(backlog)
        backlog -= new
        cadence = learn(cadence, new_items=new, elapsed=cadence.interval, bounds=BOUNDS)
    target = BOUNDS.clamp(gap)
    assert target / 2.5 <= cadence.interval <= target * 2.5
