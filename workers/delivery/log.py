"""Log delivery: the alert as one structured log line.

Role: the simplest channel, for development and for feeding a log pipeline. Input: an
:class:`~workers.model.Alert` and its :class:`~monitor.config.LogChannel`. Output: one
structlog event named ``alert`` through ``structlog.get_logger()``, so it is rendered
(JSON or console) by whatever :func:`monitor.logs.configure_logging` set up.

Fields: ``alert_id``, ``rule``, ``query``, ``title``, ``url``, ``feed``, ``published``
(ISO 8601 or ``None``), ``entities`` as ``"text (LABEL)"`` strings and ``matched`` as
``"term (field start-end)"`` strings. A digest is one ``alert_digest`` event with
``digest_id``, ``count``, ``rules``, ``alert_ids`` and ``titles``.

Invariants: one line per call; feed text is made single-line; nothing from the
configuration (and so no secret) is logged; never raises a DeliveryError.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from monitor.config import LogChannel
from workers.delivery.digest_render import digest_log_fields
from workers.delivery.render import one_line
from workers.model import Alert

__all__ = ["log_alert", "log_digest", "log_fields"]


def log_fields(alert: Alert) -> dict[str, object]:
    """The key-values of the ``alert`` log event (pure, for reuse and tests)."""
    item = alert.item
    return {
        "alert_id": alert.id,
        "rule": alert.rule_id,
        "query": one_line(alert.query),
        "title": one_line(item.title),
        "url": item.url,
        "feed": item.feed_name or item.feed_url,
        "published": item.published.isoformat() if item.published else None,
        "entities": [f"{one_line(e.text)} ({e.label})" for e in alert.entities],
        "matched": [f"{m.term} ({m.field} {m.start}-{m.end})" for m in alert.matched],
    }


def log_alert(alert: Alert, channel: LogChannel) -> None:
    """Write the alert as one ``alert`` event; ``channel`` carries no settings today."""
    del channel  # part of the Deliverer signature; a log channel has no options yet
    structlog.get_logger().info("alert", **log_fields(alert))


def log_digest(alerts: Sequence[Alert], digest_id: str, channel: LogChannel) -> None:
    """Write a digest as one ``alert_digest`` event: id, count, rules, ids and titles."""
    del channel
    structlog.get_logger().info("alert_digest", **digest_log_fields(alerts, digest_id))
