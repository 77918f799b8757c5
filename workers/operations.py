"""What an operator does to alerts from the command line: list them, list the dead
letters, replay them, mute and unmute stories.

Functions over a Redis connection and the config; the CLI (``wirewatch alerts …``,
``wirewatch stories …``) formats what they return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from monitor.config import Config
from monitor.keys import Keys
from workers import deadletter
from workers.alerts import hold_for_digest
from workers.dispatch import enqueue_delivery, enqueue_notice, replay_tag

_STATUS_EVENTS = ("delivered", "dead", "digest", "skip")


@dataclass
class AlertSummary:
    id: str
    rule: str
    title: str
    url: str
    story: str
    severity: str
    raised_at: float
    channels: dict[str, str] = field(default_factory=dict)  # channel → last status

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "title": self.title,
            "url": self.url,
            "story": self.story,
            "severity": self.severity,
            "raised_at": self.raised_at,
            "channels": self.channels,
        }


def list_alerts(
    connection: redis.Redis, keys: Keys, *, rule: str | None = None, limit: int = 50
) -> list[AlertSummary]:
    """The newest alerts first, each with the last known status per channel."""
    alerts: dict[str, AlertSummary] = {}
    order: list[str] = []
    # Oldest to newest, so a later status overwrites an earlier one.
    entries: list[tuple[bytes, dict[bytes, bytes]]]
    entries = connection.xrange(keys.alert_history())  # type: ignore[assignment]
    for entry_id, raw in entries:
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        event, alert = fields.get("event"), fields.get("id", "")
        if event == "raised":
            alerts[alert] = AlertSummary(
                id=alert,
                rule=fields.get("rule", ""),
                title=fields.get("title", ""),
                url=fields.get("url", ""),
                story=fields.get("story", ""),
                severity=fields.get("severity", "info"),
                raised_at=int(entry_id.decode().split("-")[0]) / 1000,
            )
            order.append(alert)
        elif event in _STATUS_EVENTS and alert in alerts:
            status = {"digest": "held for digest", "skip": "skipped"}.get(event, event)
            alerts[alert].channels[fields.get("channel", "?")] = status
    chosen = [alerts[a] for a in reversed(order) if rule is None or alerts[a].rule == rule]
    return chosen[:limit]


def list_dead(connection: redis.Redis, keys: Keys) -> list[deadletter.DeadLetter]:
    return deadletter.dead_letters(connection, keys)


@dataclass(frozen=True, slots=True)
class Replayed:
    """What :func:`replay` did: the letters sent again, and those kept, with why."""

    replayed: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)


def replay(connection: redis.Redis, config: Config, letter_id: str | None) -> Replayed:
    """Send dead letters again (one by id, or all with ``None``).

    An alert id without ``:channel`` replays that alert on every channel it died on. A
    letter whose alert records have expired (``workers.alert_days``) cannot be sent
    again: it stays a dead letter, and :attr:`Replayed.kept` says why.
    """
    keys = Keys(config.redis.prefix)
    letters = deadletter.dead_letters(connection, keys)
    if letter_id is not None:
        letters = [letter for letter in letters if letter_id in (letter.id, letter.target)]
    done = Replayed()
    for letter in letters:
        if why := _unreplayable(connection, keys, letter):
            done.kept[letter.id] = why
            continue
        taken = deadletter.exhume(connection, keys, letter.id)
        if taken is None:  # another operator replayed it meanwhile
            continue
        if taken.kind == "digest":  # back into the channel's buffer, flushed now
            for alert in taken.alert_ids:
                hold_for_digest(connection, keys, alert, taken.channel, datetime.now(UTC))
        elif taken.kind == "notice" and taken.payload is not None:
            enqueue_notice(connection, keys, taken.payload)
        else:
            enqueue_delivery(connection, keys, taken.target, taken.channel, tag=replay_tag())
        done.replayed.append(taken.id)
    return done


def _unreplayable(connection: redis.Redis, keys: Keys, letter: deadletter.DeadLetter) -> str:
    """Why ``letter`` cannot be sent again (its alert records are gone), or ""."""
    if letter.kind == "notice":
        return ""
    alerts = letter.alert_ids if letter.kind == "digest" else (letter.target,)
    if alerts and not any(connection.exists(keys.alert(alert)) for alert in alerts):
        return "its alert record has expired (workers.alert_days): nothing left to send"
    return ""


def mute_story(connection: redis.Redis, keys: Keys, story: str, seconds: float) -> None:
    connection.set(keys.muted(story), "1", ex=max(1, int(seconds)))


def unmute_story(connection: redis.Redis, keys: Keys, story: str) -> bool:
    return bool(connection.delete(keys.muted(story)))
