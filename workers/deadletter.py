"""Failed delivery attempts and dead letters, kept in Redis for the operator.

Every failed attempt of a delivery (an alert or a digest to one channel) is appended to
``attempts:{target}:{channel}``. When a delivery gives up — a permanent error such as a
404, or the last retry failed — it is *buried*: a record with every attempt's error goes
into the ``dead`` hash, where ``wirewatch alerts dead`` lists it and ``wirewatch alerts
replay`` takes it out to send again. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import redis

from monitor.keys import Keys

Kind = Literal["alert", "digest", "notice"]


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    at: float
    reason: str
    status: int | None = None
    transient: bool = True


@dataclass(frozen=True, slots=True)
class DeadLetter:
    target: str  # the alert id, or the digest id
    channel: str
    kind: Kind
    reason: str  # the last error
    buried_at: float
    rule: str = ""
    title: str = ""
    alert_ids: tuple[str, ...] = ()  # for a digest: the alerts it held
    payload: dict[str, Any] | None = None  # for a notice: the notice itself
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return dead_id(self.target, self.channel)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = self.id
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeadLetter:
        return cls(
            target=data["target"],
            channel=data["channel"],
            kind=data["kind"],
            reason=data["reason"],
            buried_at=data["buried_at"],
            rule=data.get("rule", ""),
            title=data.get("title", ""),
            alert_ids=tuple(data.get("alert_ids", ())),
            payload=data.get("payload"),
            attempts=tuple(Attempt(**a) for a in data.get("attempts", ())),
        )


def dead_id(target: str, channel: str) -> str:
    return f"{target}:{channel}"


def record_attempt(
    connection: redis.Redis, keys: Keys, target: str, channel: str, attempt: Attempt, ttl_s: int
) -> None:
    key = keys.attempts(target, channel)
    pipe = connection.pipeline()
    pipe.rpush(key, json.dumps(asdict(attempt)))
    pipe.expire(key, ttl_s)
    pipe.execute()


def attempts_of(connection: redis.Redis, keys: Keys, target: str, channel: str) -> list[Attempt]:
    raw = connection.lrange(keys.attempts(target, channel), 0, -1)
    return [Attempt(**json.loads(entry)) for entry in raw]


def bury(connection: redis.Redis, keys: Keys, letter: DeadLetter) -> None:
    connection.hset(keys.dead(), letter.id, json.dumps(letter.to_json()))


def dead_letters(connection: redis.Redis, keys: Keys) -> list[DeadLetter]:
    raw = connection.hgetall(keys.dead())
    letters = [DeadLetter.from_json(json.loads(value)) for value in raw.values()]
    return sorted(letters, key=lambda letter: letter.buried_at)


def exhume(connection: redis.Redis, keys: Keys, letter_id: str) -> DeadLetter | None:
    """Take a dead letter out (for a replay); None when there is no such letter."""
    pipe = connection.pipeline()
    pipe.hget(keys.dead(), letter_id)
    pipe.hdel(keys.dead(), letter_id)
    raw, _ = pipe.execute()
    if raw is None:
        return None
    letter = DeadLetter.from_json(json.loads(raw))
    connection.delete(keys.attempts(letter.target, letter.channel))
    return letter


def now() -> float:
    return time.time()
