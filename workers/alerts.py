"""Turn a rule match into an alert, once per (rule, story), and route it to channels.

The alert id is derived from the rule id and the story id, so every worker computes the
same id for the same pair; a follow-up's id from the rule, story and what it tells
(:mod:`workers.followups`), and it threads to the first alert. ``SET alert:{id} NX`` is
the claim; the worker that makes it routes the alert to each of the rule's channels
(:func:`workers.fatigue.route`): send now, hold for a digest (the channel's digest
window, quiet hours, or the rule's rate limit overflowing), or skip (a muted story, a
severity below the channel's minimum).
Every decision is logged and written to the alert history.

If a worker dies after the claim but before routing, the retried batch finds the alert
without its ``queued`` flag and routes it then; every routing step is idempotent
(deterministic job ids, digest buffers keyed by alert id, rate windows keyed by alert id,
outbox entries keyed by alert and channel). A send the batch makes itself is written to
the outbox with the flag, in one MULTI (:mod:`workers.outbox`: who sends it if the
worker dies before it does).

A batch raises all its alerts together (:func:`raise_alerts`): the claims in one
pipeline, the routing writes in the batch's own MULTI, with its items' state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis
import structlog
from rq import Retry

from monitor.config import RuleConfig
from monitor.keys import Keys, digest
from workers import digest as digests
from workers.dispatch import enqueue_first_attempt, enqueue_on_alerts_queue, history
from workers.fatigue import route
from workers.model import Alert
from workers.outbox import Send, deadline, member
from workers.outbox import inline as sends_inline
from workers.ratelimit import over_rate
from workers.resources import Resources

log = structlog.get_logger()

FLUSH_JOB = "workers.jobs.flush_digest"


def alert_id(rule_id: str, story_id: str) -> str:
    return digest(f"{rule_id}\x00{story_id}", 32)


def raise_alert(
    connection: redis.Redis,
    res: Resources,
    alert: Alert,
    rule: RuleConfig,
    outbox: list[Send] | None = None,
) -> bool:
    """Record the alert and route it. False when it existed (and was routed) already.

    ``outbox``: where a batch job collects the sends it makes itself once the batch is
    done (:mod:`workers.outbox`); without it, every send now is a delivery job."""
    return raise_alerts(connection, res, [(alert, rule)], outbox)[0]


def raise_alerts(
    connection: redis.Redis,
    res: Resources,
    pending: Sequence[tuple[Alert, RuleConfig]],
    outbox: list[Send] | None = None,
    writes: redis.client.Pipeline | None = None,
) -> list[bool]:
    """:func:`raise_alert` for several alerts in two round trips; per alert whether it
    was new. An id repeated in ``pending`` is raised once (its repeats: False).

    ``writes``: a MULTI pipeline of the caller's that the flags, history and outbox
    entries join (the caller executes it; until then no alert counts as routed), else
    they are written here, in one MULTI."""
    keys = res.keys
    ttl = int(res.config.workers.alert_days * 86400)
    first = {alert.id: n for n, (alert, _) in reversed(list(enumerate(pending)))}
    unique = [(n, alert, rule) for n, (alert, rule) in enumerate(pending) if first[alert.id] == n]
    # One round trip: the claims, whether each was routed before, whether its story is
    # muted (by its id, or by the item's key: muting an item mutes the story it is in).
    pipe = connection.pipeline(transaction=False)
    for _, alert, _ in unique:
        pipe.set(keys.alert(alert.id), _record(alert), nx=True, ex=ttl)
        pipe.exists(f"{keys.alert(alert.id)}:queued")
        pipe.exists(keys.muted(alert.story), keys.muted(alert.item.key))
    replies = pipe.execute()
    # The flags, the history and the outbox entries in one MULTI: a crash leaves all or
    # none (then the retried batch routes again), and an entry is never without its flag.
    multi = writes if writes is not None else connection.pipeline(transaction=True)
    created = [False] * len(pending)
    sends: list[Send] = []
    for index, (n, alert, rule) in enumerate(unique):
        claimed, routed, muted = replies[3 * index : 3 * index + 3]
        created[n] = bool(claimed)
        if not claimed and routed:
            log.info("alert_duplicate", alert_id=alert.id, rule=alert.rule_id, story=alert.story)
            continue
        names = _record_and_route(
            connection, multi, res, alert, rule, bool(claimed), bool(muted), outbox is not None
        )
        if names:
            due = deadline(res, time.time())
            multi.zadd(keys.outbox(), {member(alert.id, name): due for name in names}, nx=True)
            sends.extend(Send(alert, name) for name in names)
        multi.set(f"{keys.alert(alert.id)}:queued", "1", ex=ttl)
    if writes is None:
        multi.execute()
    if outbox is not None:
        outbox.extend(sends)
    return created


def _record(alert: Alert) -> str:
    return json.dumps(alert.to_json(), separators=(",", ":"))


def _record_and_route(
    connection: redis.Redis,
    multi: redis.client.Pipeline,
    res: Resources,
    alert: Alert,
    rule: RuleConfig,
    created: bool,
    muted: bool,
    inline: bool,
) -> list[str]:
    """The alert's history entry (when new) and its routing; the channels sent inline."""
    if created:
        history(
            multi,
            res,
            "raised",
            alert.id,
            rule=alert.rule_id,
            story=alert.story,
            severity=alert.severity,
            title=alert.item.title,
            url=alert.item.url,
        )
        log.info(
            "alert_raised",
            alert_id=alert.id,
            rule=alert.rule_id,
            story=alert.story,
            title=alert.item.title,
            channels=rule.channels,
        )
    return _route(connection, multi, res, alert, rule, muted=muted, inline=inline)


def _route(
    connection: redis.Redis,
    writes: redis.client.Pipeline,
    res: Resources,
    alert: Alert,
    rule: RuleConfig,
    *,
    muted: bool,
    inline: bool,
) -> list[str]:
    """Apply the fatigue rules per channel; returns the channels the caller sends to now
    itself (only with ``inline``: the others are jobs, digests or skips, done here).
    History entries go into ``writes``, the caller's MULTI."""
    keys = res.keys
    now = datetime.now(UTC)
    over: bool | None = None  # asked once, and only if some channel would send now
    sends: list[str] = []
    for name in rule.channels:
        channel = res.config.channels[name]
        decision = route(rule, channel, now=now, over_rate=False, muted=muted)
        if decision.action == "send" and rule.max_rate is not None:
            if over is None:
                over = over_rate(
                    connection, keys, rule.id, rule.max_rate, alert.id, now.timestamp()
                )
            if over:
                decision = route(rule, channel, now=now, over_rate=True, muted=muted)
        if decision.action == "send":
            if inline and sends_inline(res, channel):
                sends.append(name)  # its claim checks the delivered mark
                continue
            if connection.exists(keys.delivered(alert.id, name)):
                continue
            enqueue_first_attempt(connection, keys, alert.id, name)
            continue
        history(writes, res, decision.action, alert.id, channel=name, reason=decision.reason)
        log.info(
            "alert_held" if decision.action == "digest" else "alert_skipped",
            alert_id=alert.id,
            rule=alert.rule_id,
            channel=name,
            reason=decision.reason,
        )
        if decision.action == "digest" and decision.flush_at is not None:
            hold_for_digest(
                connection, keys, alert.id, name, decision.flush_at, decision.hold_until
            )
    return sends


def hold_for_digest(
    connection: redis.Redis,
    keys: Keys,
    alert: str,
    channel: str,
    flush_at: datetime,
    hold_until: datetime | None = None,
) -> None:
    """Buffer the alert for the channel's next digest; schedule the flush if none is, or
    if the scheduled one comes later. ``hold_until`` (quiet hours): not sent before then,
    whatever earlier digest the channel sends."""
    not_before = hold_until.timestamp() if hold_until is not None else None
    token = digests.add(
        connection, keys, channel, alert, flush_at.timestamp(), not_before=not_before
    )
    if token is not None:
        schedule_flush(connection, keys, channel, flush_at, token=token)


def schedule_flush(
    connection: redis.Redis,
    keys: Keys,
    channel: str,
    at: datetime,
    attempt: int = 1,
    token: str | None = None,
) -> None:
    """Run ``flush_digest(channel, attempt, token)`` at ``at`` (rq's scheduler runs in
    workers). ``token``: the flush flag it claimed (:mod:`workers.digest`); the job does
    nothing if another flush has taken the flag over since (one due earlier)."""
    args: tuple[str | int, ...] = (channel, attempt) if token is None else (channel, attempt, token)
    enqueue_on_alerts_queue(
        connection,
        keys,
        FLUSH_JOB,
        *args,
        delay_s=at.timestamp() - time.time(),
        retry=Retry(max=2),  # a crashed flush runs again; its batch waits in Redis
        job_timeout=digests.FLUSH_JOB_TIMEOUT_S,
        result_ttl=86400,
        failure_ttl=30 * 86400,
        description=f"send the digest of channel {channel} (attempt {attempt})",
    )
