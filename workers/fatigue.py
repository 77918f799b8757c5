"""Alert fatigue controls: decide whether an alert goes out now, into a digest, or nowhere.

The functional core of section 5 of issue 5. Pure: no Redis, no clock, no logging; the
caller passes ``now`` and the two facts that need Redis (is the story muted, is the rule
over its rate), so every decision is reproducible in a test.

Inputs: a :class:`~monitor.config.RuleConfig` (``severity``, ``max_rate``, ``quiet_hours``),
one channel of that rule (``min_severity``, ``digest``), an aware ``now``.
Output: a frozen :class:`Decision` — ``send``, ``digest`` (with ``flush_at``, when the
digest should go out) or ``skip`` — with a human-readable ``reason`` for logs. A digest
held by quiet hours also has ``hold_until`` (the window's end): the alert must not leave
before then, even with an earlier digest of the channel (another rule's, or the
channel's own window); other digested alerts only gather, and may go out with any
earlier flush (:mod:`workers.digest` keeps the two apart).

Policy, first match wins:

1. a muted story → ``skip``;
2. a severity below the channel's ``min_severity`` → ``skip`` (this is how severities are
   routed to different channels: a pager channel with ``min_severity: critical``);
3. quiet hours → ``digest`` flushed, and held, until the window ends. **Critical alerts
   bypass quiet hours**: an analyst asks to be woken for those;
4. over the rule's rate → ``digest`` flushed after the channel's digest window, else after
   the rate window. Overflow is delayed, never dropped. Critical alerts do *not* bypass
   the rate limit: a flood of criticals is still a flood;
5. the channel collects digests → ``digest`` flushed after ``channel.digest``;
6. otherwise → ``send``.

Call order with the rate limiter (:func:`workers.ratelimit.over_rate` admits the alert
into the window as it checks it): route with ``over_rate=False`` first, and only when that
says ``send`` and the rule has a ``max_rate`` ask Redis and route again. Muted, filtered,
quiet or digested alerts then never use up the rule's budget.

Invariants: ``flush_at`` is set exactly when the action is ``digest`` and is strictly after
``now``; ``hold_until`` is None or equals ``flush_at``, and is set only by quiet hours;
:func:`quiet_until` is ``None`` or strictly after ``now`` (at most 24 h later, plus a
daylight-saving shift on the night clocks change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Literal
from zoneinfo import ZoneInfo

from monitor.config import Channel, QuietHours, RuleConfig
from monitor.config_channels import SEVERITY_RANK

__all__ = ["Action", "Decision", "quiet_until", "route", "severity_allows"]

Action = Literal["send", "digest", "skip"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one alert on one channel, and why."""

    action: Action
    reason: str
    flush_at: datetime | None = None  # aware UTC; set exactly when action == "digest"
    # Quiet hours: not to be sent before this (== flush_at). Left out of ==: the reason
    # ("quiet hours until …") and flush_at already determine it.
    hold_until: datetime | None = field(default=None, compare=False)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (use datetime.now(UTC))")
    return now


def _inside(start: dtime, end: dtime, t: dtime) -> bool:
    if start < end:
        return start <= t < end
    return t >= start or t < end  # the window crosses midnight


def _local_end(day: date, end: dtime, zone: ZoneInfo, now: datetime) -> datetime | None:
    """``end`` on ``day`` in ``zone`` as UTC, the first such instant after ``now``.

    A wall time skipped by a spring-forward gap resolves to the instant after the gap;
    a wall time repeated by a fall-back resolves to whichever occurrence is still ahead.
    """
    for fold in (0, 1):
        candidate = datetime.combine(day, end, tzinfo=zone).replace(fold=fold).astimezone(UTC)
        if candidate > now:
            return candidate
    return None


def quiet_until(quiet: QuietHours | None, now: datetime) -> datetime | None:
    """When ``now`` is inside the quiet window, the UTC instant it ends; else ``None``.

    The window is local wall-clock time in ``quiet.tz``: ``start`` inclusive, ``end``
    exclusive; ``start > end`` crosses midnight (22:00–07:00); ``start == end`` is never
    quiet (an empty window, not a 24-hour one). An ``end`` that a spring-forward gap skips
    resolves to the instant after the gap (02:30 → 03:30 summer time); a window nearly a
    day long may then run straight into its next start, which this function ignores.
    """
    now = _aware(now)
    if quiet is None or quiet.start == quiet.end:
        return None
    zone = ZoneInfo(quiet.tz)
    local = now.astimezone(zone)
    start, end = quiet.start.replace(tzinfo=None), quiet.end.replace(tzinfo=None)
    t = local.time()
    if not _inside(start, end, t):
        return None
    # Past midnight already (or a same-day window): it ends today; else tomorrow.
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return _local_end(day, end, zone, now.astimezone(UTC))


def severity_allows(channel_min: str, severity: str) -> bool:
    """True when ``severity`` reaches the channel's ``min_severity``."""
    try:
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[channel_min]
    except KeyError as exc:
        raise ValueError(f"unknown severity {exc.args[0]!r}") from exc


def route(
    rule: RuleConfig, channel: Channel, *, now: datetime, over_rate: bool, muted: bool
) -> Decision:
    """Apply the fatigue policy (see the module docstring) to one alert on one channel.

    ``over_rate`` must only be True for a rule with a ``max_rate`` (ValueError otherwise).
    """
    now = _aware(now)
    if muted:
        return Decision("skip", "muted story")
    if not severity_allows(channel.min_severity, rule.severity):
        return Decision("skip", f"below channel min_severity {channel.min_severity}")
    if rule.severity != "critical" and rule.quiet_hours is not None:
        until = quiet_until(rule.quiet_hours, now)
        if until is not None:
            tz = rule.quiet_hours.tz
            local_end = until.astimezone(ZoneInfo(tz)).strftime("%H:%M")
            return Decision("digest", f"quiet hours until {local_end} {tz}", until, until)
    if over_rate:
        if rule.max_rate is None:
            raise ValueError(f"rule {rule.id!r} has no max_rate, so it cannot be over it")
        wait = channel.digest if channel.digest is not None else rule.max_rate.window_s
        return Decision("digest", f"rate limit {rule.max_rate} exceeded", _later(now, wait))
    if channel.digest is not None:
        return Decision(
            "digest", f"channel digest {channel.digest:g}s", _later(now, channel.digest)
        )
    return Decision("send", "send")


def _later(now: datetime, seconds: float) -> datetime:
    return now.astimezone(UTC) + timedelta(seconds=seconds)
