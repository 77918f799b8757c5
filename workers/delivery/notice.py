"""Feed health notices: "feed X is failing" / "feed X recovered", to one channel.

The poller enqueues one notice per health transition (never one per failure); this
module renders it for each channel type and sends it through the same transports as
alerts (signed webhook, SMTP, log line, Apprise). A notice has a stable ``id`` (feed,
state and time of the transition), used as ``webhook-id`` and ``Message-ID``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from monitor.config import AppriseChannel, Channel, EmailChannel, LogChannel, WebhookChannel
from monitor.keys import digest
from workers.delivery import apprise_channel, email, webhook
from workers.delivery.errors import DeliveryError
from workers.delivery.formats import Payload
from workers.delivery.render import one_line

log = structlog.get_logger()

NOTICE_VERSION = 1


@dataclass(frozen=True, slots=True)
class FeedNotice:
    feed: str
    url: str
    state: str  # healthy | degraded | failing | gone
    previous: str
    reason: str | None
    at: float

    @property
    def id(self) -> str:
        return digest(f"{self.url}\x00{self.state}\x00{self.at:.3f}", 32)

    @property
    def title(self) -> str:
        verb = "recovered" if self.state == "healthy" else f"is {self.state}"
        return one_line(f"[wirewatch] feed {self.feed} {verb}")

    @property
    def text(self) -> str:
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [
            f"Feed: {self.feed}",
            f"URL: {self.url}",
            f"State: {self.previous} → {self.state} at {when}",
        ]
        if self.reason:
            lines.append(f"Reason: {self.reason}")
        lines.append("")
        lines.append("Run 'wirewatch status' for every feed's health.")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"v": NOTICE_VERSION, "type": "feed_notice", "id": self.id, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedNotice:
        if data.get("v") != NOTICE_VERSION:
            raise ValueError(f"unsupported notice version {data.get('v')!r}")
        return cls(
            feed=str(data.get("feed") or data.get("url", "")),
            url=str(data.get("url", "")),
            state=str(data["state"]),
            previous=str(data.get("previous", "")),
            reason=data.get("reason"),
            at=_timestamp(data.get("at")),
        )


def _timestamp(value: object) -> float:
    """``at`` as unix time: the poller sends ISO 8601 (``…Z``); numbers are accepted too."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return time.time()


def deliver_notice(notice: FeedNotice, channel_name: str, channel: Channel) -> None:
    """Send ``notice`` to one channel; DeliveryError (with ``channel_name``) on failure."""
    try:
        match channel:
            case WebhookChannel():
                _webhook(notice, channel)
            case EmailChannel():
                message = email.new_message(channel, notice.title)
                message["Message-ID"] = email.message_id_for(notice.id)
                message.set_content(notice.text)
                email.send_message(message, channel)
            case LogChannel():
                log.warning("feed_notice", **notice.to_json())
            case AppriseChannel():
                apprise_channel.notify(channel, notice.title, notice.text)
            case _:
                raise DeliveryError(channel_name, f"unknown channel {channel!r}", False)
    except DeliveryError as exc:
        raise exc.for_channel(channel_name) from (exc.__cause__ or exc)


def _webhook(notice: FeedNotice, channel: WebhookChannel) -> None:
    if channel.format == "slack":
        body: dict[str, Any] = {"text": f"{notice.title}\n{notice.text}"}
    elif channel.format == "teams":
        body = {"type": "message", "text": f"{notice.title}\n\n{notice.text}"}
    else:  # standard, and template channels (their template is made for alerts)
        body = notice.to_json()
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    webhook.send_payload(notice.id, Payload(raw), channel)
