"""Config schema of delivery: the channels (webhook, email, log, apprise) and retries.

Secrets (webhook keys, SMTP passwords, Apprise URLs, which embed tokens) are
``SecretStr``: they print as ``**********`` and never reach a log line. Every channel
can hold alerts for a ``digest`` window, accept only alerts of ``min_severity`` or more,
and override the global ``delivery.retry`` policy.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from monitor.config_types import Seconds, http_url_problem

Severity = Literal["info", "warning", "critical"]
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RetrySettings(_Model):
    """Exponential backoff with jitter: first_delay, × factor each time, capped."""

    attempts: int = Field(10, ge=1, le=100, description="tries in all, the first included")
    first_delay: Seconds = Field(2.0, description="delay before the first retry")
    factor: float = Field(3.0, ge=1)
    max_delay: Seconds = Field(1800.0, description="cap on one delay")
    jitter: float = Field(0.2, ge=0, le=1, description="± this fraction of each delay")


class DeliverySettings(_Model):
    retry: RetrySettings = RetrySettings()
    history_max: int = Field(10_000, ge=10, description="events kept in the alert history")
    inline_timeout: float = Field(
        5.0, ge=0, description="first attempt sent by the batch job itself; 0: always a job"
    )


class _ChannelBase(_Model):
    min_severity: Severity = "info"
    digest: Seconds | None = Field(None, description="collect alerts, send one per window")
    retry: RetrySettings | None = Field(None, description="overrides delivery.retry")


class WebhookChannel(_ChannelBase):
    type: Literal["webhook"]
    url: SecretStr = Field(description="the receiver; secret, since Slack/Teams URLs hold tokens")
    secret: SecretStr | list[SecretStr] | None = Field(
        None,
        description="Standard Webhooks key 'whsec_<base64>', or a list during a rotation",
    )
    timeout: float = Field(10, gt=0)
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra headers; values are secret (tokens)"
    )
    format: Literal["standard", "slack", "teams", "template"] = "standard"
    template: str | None = Field(None, description="Jinja2 template of the body (format: template)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: SecretStr) -> SecretStr:
        if urlsplit(url.get_secret_value()).scheme not in ("http", "https"):
            raise ValueError("a webhook URL must be http:// or https://")
        if problem := http_url_problem(url.get_secret_value()):
            raise ValueError(problem)  # not the URL itself: it is a secret
        return url

    @field_validator("headers")
    @classmethod
    def _header_values(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            text = value.get_secret_value()
            # Never the value itself in the message: it is a secret (a token read from the
            # environment, whose trailing newline is the usual culprit).
            if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in text):
                raise ValueError(f"header {name!r}: its value holds a control character")
            if not text.isascii():
                raise ValueError(f"header {name!r}: its value holds a character that is not ASCII")
        return headers

    @field_validator("secret")
    @classmethod
    def _whsec(
        cls, secret: SecretStr | list[SecretStr] | None
    ) -> SecretStr | list[SecretStr] | None:
        from monitor.signing import decode_secret

        values = secret if isinstance(secret, list) else [secret] if secret else []
        kept = [value for value in values if value.get_secret_value()]
        for value in kept:
            decode_secret(value.get_secret_value())  # raises ValueError with the reason
        return kept or None

    @model_validator(mode="after")
    def _template_given(self) -> WebhookChannel:
        if self.format == "template" and not self.template:
            raise ValueError("format 'template' needs a 'template'")
        if self.template:
            _compile_template(self.template)
        return self

    @property
    def secrets(self) -> list[str]:
        """Every signing key, newest first; empty when unsigned."""
        if not self.secret:
            return []
        values = self.secret if isinstance(self.secret, list) else [self.secret]
        return [value.get_secret_value() for value in values]


def _compile_template(source: str) -> None:
    """Raise ValueError for a template that does not compile (syntax, unknown filter).

    Compiled as the sender compiles it (:mod:`workers.delivery.formats`: Jinja2's
    immutable sandbox), so ``wirewatch check`` and a reload refuse it instead of every
    alert to the channel going to the dead letters. Names (``alert.item.title``) are
    only known when an alert renders.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined).from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from None


class SmtpSettings(_Model):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = Field(False, description="implicit TLS (port 465)")
    username: str = ""
    password: SecretStr = SecretStr("")
    timeout: float = Field(30, gt=0)

    @field_validator("password")
    @classmethod
    def _ascii_password(cls, password: SecretStr) -> SecretStr:
        # smtplib sends AUTH in ASCII: any other character fails every login, and its
        # error would quote that character of the secret.
        if not password.get_secret_value().isascii():
            raise ValueError("the SMTP password holds a character that is not ASCII")
        return password


class EmailChannel(_ChannelBase):
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


class LogChannel(_ChannelBase):
    type: Literal["log"]


class AppriseChannel(_ChannelBase):
    """Any service Apprise knows (Slack, Teams, Telegram, Discord, ntfy, Matrix, …)."""

    type: Literal["apprise"]
    urls: list[SecretStr] = Field(min_length=1, description="Apprise URLs; they hold tokens")


Channel = Annotated[
    WebhookChannel | EmailChannel | LogChannel | AppriseChannel, Field(discriminator="type")
]
CHANNEL_TYPES = ("webhook", "email", "log", "apprise")
