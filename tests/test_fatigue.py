"""Fatigue policy: quiet hours (time zones, midnight, DST), severity routing, digest routing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.config import LogChannel, QuietHours, RuleConfig
from workers.fatigue import Decision, quiet_until, route, severity_allows

NIGHT_PARIS = QuietHours(start=time(22), end=time(7), tz="Europe/Paris")
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


def rule(**fields: Any) -> RuleConfig:
    return RuleConfig.model_validate({"id": "r1", "query": "x", "channels": ["c"], **fields})


def channel(**fields: Any) -> LogChannel:
    return LogChannel.model_validate({"type": "log", **fields})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- quiet_until -------------------------------------------------------------------------


def test_night_window_in_paris_ends_at_seven_local() -> None:
    # 2024-01-15 22:30 UTC is 23:30 in Paris (CET, UTC+1): quiet until 07:00 CET = 06:00 UTC.
    assert quiet_until(NIGHT_PARIS, utc(2024, 1, 15, 22, 30)) == utc(2024, 1, 16, 6, 0)
    # After midnight, the window ends the same local day.
    assert quiet_until(NIGHT_PARIS, utc(2024, 1, 16, 3, 0)) == utc(2024, 1, 16, 6, 0)


def test_outside_the_window_is_not_quiet() -> None:
    assert quiet_until(NIGHT_PARIS, utc(2024, 1, 15, 12, 0)) is None
    assert quiet_until(NIGHT_PARIS, utc(2024, 1, 16, 6, 0)) is None  # end is exclusive
    assert quiet_until(NIGHT_PARIS, utc(2024, 1, 15, 21, 0)) == utc(2024, 1, 16, 6, 0)  # 22:00


def test_summer_time_moves_the_utc_end() -> None:
    # July: CEST, UTC+2 → 07:00 local is 05:00 UTC.
    assert quiet_until(NIGHT_PARIS, utc(2024, 7, 1, 23, 0)) == utc(2024, 7, 2, 5, 0)


def test_night_of_the_spring_forward() -> None:
    # Paris, 2024-03-31: 02:00 CET jumps to 03:00 CEST. 23:00 CET → 07:00 CEST = 05:00 UTC.
    assert quiet_until(NIGHT_PARIS, utc(2024, 3, 30, 22, 0)) == utc(2024, 3, 31, 5, 0)
    # An end inside the gap (02:30 never happens) ends when the clocks have moved.
    gap = QuietHours(start=time(1), end=time(2, 30), tz="Europe/Paris")
    until = quiet_until(gap, utc(2024, 3, 31, 0, 15))  # 01:15 CET
    assert until == utc(2024, 3, 31, 1, 30)  # 03:30 CEST, the first instant past 02:30 CET


def test_night_of_the_fall_back() -> None:
    # Paris, 2024-10-27: 03:00 CEST falls back to 02:00 CET, 02:00–03:00 happens twice.
    window = QuietHours(start=time(1), end=time(2, 30), tz="Europe/Paris")
    assert quiet_until(window, utc(2024, 10, 27, 0, 0)) == utc(2024, 10, 27, 0, 30)  # 02:30 CEST
    # 02:15 CET, the second time round: quiet until the second 02:30, never into the past.
    assert quiet_until(window, utc(2024, 10, 27, 1, 15)) == utc(2024, 10, 27, 1, 30)


def test_equal_start_and_end_is_never_quiet() -> None:
    same = QuietHours(start=time(9), end=time(9), tz="UTC")
    assert quiet_until(same, utc(2024, 1, 1, 9, 0)) is None
    assert quiet_until(None, utc(2024, 1, 1, 9, 0)) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_until(NIGHT_PARIS, datetime(2024, 1, 1))


times = st.times().map(lambda t: t.replace(microsecond=0))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


@given(start=times, end=times, tz=st.sampled_from(ZONES), now=instants)
def test_quiet_until_is_ahead_and_within_a_day(
    start: time, end: time, tz: str, now: datetime
) -> None:
    until = quiet_until(QuietHours(start=start, end=end, tz=tz), now)
    if until is not None:
        assert until > now
        # A window is shorter than a day of wall-clock time; a DST night may add an hour.
        assert until - now <= timedelta(hours=24 if tz == "UTC" else 25)
        assert until.utcoffset() == timedelta(0)


@given(
    start=st.integers(min_value=12, max_value=23),
    end=st.integers(min_value=0, max_value=11),
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 1, 1)),
    tz=st.sampled_from(ZONES),
)
def test_a_window_across_midnight_is_quiet_at_both_edges(
    start: int, end: int, day: date, tz: str
) -> None:
    quiet = QuietHours(start=time(start), end=time(end), tz=tz)
    zone = ZoneInfo(tz)
    starts = datetime.combine(day, time(start), tzinfo=zone).astimezone(UTC)
    ends = datetime.combine(day, time(end), tzinfo=zone).astimezone(UTC)
    assert quiet_until(quiet, starts + timedelta(seconds=1)) is not None
    assert quiet_until(quiet, ends - timedelta(seconds=1)) == ends


# --- severity and routing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel_min", "severity", "allowed"),
    [
        ("info", "info", True),
        ("info", "critical", True),
        ("warning", "info", False),
        ("warning", "warning", True),
        ("critical", "warning", False),
        ("critical", "critical", True),
    ],
)
def test_severity_allows(channel_min: str, severity: str, allowed: bool) -> None:
    assert severity_allows(channel_min, severity) is allowed


def test_unknown_severity_is_an_error() -> None:
    with pytest.raises(ValueError, match="loud"):
        severity_allows("info", "loud")


NOW = utc(2024, 1, 15, 12, 0)  # 13:00 in Paris: outside NIGHT_PARIS
NIGHT = utc(2024, 1, 15, 23, 0)  # midnight in Paris: inside


def test_plain_alert_is_sent() -> None:
    assert route(rule(), channel(), now=NOW, over_rate=False, muted=False) == Decision(
        "send", "send"
    )


def test_muted_story_is_skipped_before_anything_else() -> None:
    decision = route(
        rule(severity="critical"), channel(digest="15m"), now=NIGHT, over_rate=False, muted=True
    )
    assert decision == Decision("skip", "muted story")


def test_severity_below_the_channel_minimum_is_skipped() -> None:
    decision = route(
        rule(severity="info"),
        channel(min_severity="warning"),
        now=NOW,
        over_rate=False,
        muted=False,
    )
    assert decision == Decision("skip", "below channel min_severity warning")


def test_quiet_hours_hold_alerts_until_the_window_ends() -> None:
    decision = route(
        rule(quiet_hours=NIGHT_PARIS, max="10/h"),
        channel(digest="15m"),
        now=NIGHT,
        over_rate=True,
        muted=False,
    )
    assert decision == Decision(
        "digest", "quiet hours until 07:00 Europe/Paris", utc(2024, 1, 16, 6, 0)
    )


def test_only_quiet_hours_hold_an_alert_back() -> None:
    """A quiet-held alert must not leave before its window ends, even with an earlier
    digest of the channel; rate overflow and channel digests only gather."""
    quiet = route(
        rule(quiet_hours=NIGHT_PARIS),
        channel(digest="15m"),
        now=NIGHT,
        over_rate=False,
        muted=False,
    )
    assert quiet.hold_until == quiet.flush_at == utc(2024, 1, 16, 6, 0)
    gathered = route(rule(), channel(digest="15m"), now=NIGHT, over_rate=False, muted=False)
    assert gathered.action == "digest" and gathered.hold_until is None
    overflow = route(rule(max="1/h"), channel(), now=NOW, over_rate=True, muted=False)
    assert overflow.action == "digest" and overflow.hold_until is None


def test_critical_alerts_bypass_quiet_hours() -> None:
    decision = route(
        rule(severity="critical", quiet_hours=NIGHT_PARIS),
        channel(),
        now=NIGHT,
        over_rate=False,
        muted=False,
    )
    assert decision.action == "send"


def test_rate_overflow_waits_for_the_channel_digest_else_the_rate_window() -> None:
    limited = rule(max="10/h", severity="critical")
    with_digest = route(limited, channel(digest="15m"), now=NOW, over_rate=True, muted=False)
    assert with_digest == Decision(
        "digest", "rate limit 10/3600s exceeded", NOW + timedelta(minutes=15)
    )
    plain = route(limited, channel(), now=NOW, over_rate=True, muted=False)
    assert plain == Decision("digest", "rate limit 10/3600s exceeded", NOW + timedelta(hours=1))


def test_over_rate_without_a_rate_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="no max_rate"):
        route(rule(), channel(), now=NOW, over_rate=True, muted=False)


def test_a_digest_channel_collects_alerts() -> None:
    decision = route(rule(), channel(digest="15m"), now=NOW, over_rate=False, muted=False)
    assert decision == Decision("digest", "channel digest 900s", NOW + timedelta(minutes=15))


@given(
    severity=st.sampled_from(["info", "warning", "critical"]),
    channel_min=st.sampled_from(["info", "warning", "critical"]),
    digest=st.none() | st.floats(min_value=1, max_value=86400),
    over=st.booleans(),
    muted=st.booleans(),
    now=instants,
)
def test_a_digest_always_flushes_later_and_only_digests_flush(
    severity: str, channel_min: str, digest: float | None, over: bool, muted: bool, now: datetime
) -> None:
    decision = route(
        rule(severity=severity, max="3/15m", quiet_hours=NIGHT_PARIS),
        channel(min_severity=channel_min, digest=digest),
        now=now,
        over_rate=over,
        muted=muted,
    )
    if decision.action == "digest":
        assert decision.flush_at is not None and decision.flush_at > now
    else:
        assert decision.flush_at is None
    held = decision.reason.startswith("quiet hours")
    assert decision.hold_until == (decision.flush_at if held else None)
    assert decision.action != "send" or not (muted or over or digest)
