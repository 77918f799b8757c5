"""rq job entry points, referenced by dotted path: ``process_batch`` and ``deliver``.

``process_batch`` runs one batch of new items from a poller through the stages:
exact dedupe → entity extraction → rule matching → alerts (one per rule and item),
and logs one summary line. ``deliver`` sends one alert to one channel; transient
failures raise so rq retries them on the configured schedule (rq's scheduler must run
in some worker, which ``wirewatch work`` does); a permanent failure is not retried.

Both are idempotent, because rq runs a job again after a crash or a retry.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
import structlog
from rq import get_current_job

from monitor.items import Item, items_from_payload
from workers import resources
from workers.alerts import alert_id, raise_alert
from workers.dedupe import dedupe
from workers.delivery import DeliveryError
from workers.delivery import deliver as deliver_to_channel
from workers.entities import distinct, item_text
from workers.model import Alert, Entity

log = structlog.get_logger()


def _connection() -> redis.Redis:
    job = get_current_job()
    if job is None:
        raise RuntimeError("this function runs as an rq job")
    connection: redis.Redis = job.connection
    return connection


def process_batch(payload: dict[str, Any]) -> dict[str, int]:
    started = time.perf_counter()
    res = resources.current()
    connection = _connection()
    items = items_from_payload(payload)
    found = dedupe(connection, res.keys, items, int(res.config.workers.dedupe_days * 86400))
    for item, owner in found.duplicates:
        log.info("item_duplicate", item=item.key, feed=item.feed_name, duplicate_of=owner)
    entities = res.extractor.extract_many([item_text(item) for item in found.new])
    alerts = 0
    matches = 0
    channels_of = {rule.id: rule.channels for rule in res.config.rules}
    for item, item_entities in zip(found.new, entities, strict=True):
        _store_item(connection, res, item, item_entities)
        for match in res.rules.match(item):
            matches += 1
            alert = Alert(
                id=alert_id(match.rule_id, item.key),
                rule_id=match.rule_id,
                query=match.query,
                item=item,
                entities=tuple(distinct(item_entities)),
                matched=match.terms,
            )
            if raise_alert(connection, res.config, res.keys, alert, channels_of[match.rule_id]):
                alerts += 1
    summary = {
        "items": len(items),
        "new": len(found.new),
        "duplicates": len(found.duplicates),
        "matches": matches,
        "alerts": alerts,
    }
    log.info(
        "batch_processed",
        **summary,
        ner=res.extractor.name,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return summary


def _store_item(
    connection: redis.Redis, res: resources.Resources, item: Item, entities: list[Entity]
) -> None:
    """Keep the processed item for a while: the API and backtests read it."""
    record = {"item": item.to_json(), "entities": [e.to_json() for e in entities]}
    ttl = int(res.config.workers.dedupe_days * 86400)
    connection.set(res.keys.item(item.key), json.dumps(record, separators=(",", ":")), ex=ttl)


def deliver(alert_key: str, channel_name: str) -> str:
    res = resources.current()
    connection = _connection()
    keys = res.keys
    structlog.contextvars.bind_contextvars(alert_id=alert_key, channel=channel_name)
    try:
        delivered_key = keys.delivered(alert_key, channel_name)
        if connection.exists(delivered_key):
            log.info("alert_already_delivered")
            return "already delivered"
        raw = connection.get(keys.alert(alert_key))
        if raw is None:
            log.error("alert_missing", reason="the alert record expired or was deleted")
            return "alert missing"
        alert = Alert.from_json(json.loads(raw))
        channel = res.config.channels.get(channel_name)
        if channel is None:
            log.error("alert_channel_unknown", reason="channel removed from the config")
            return "channel unknown"
        try:
            deliver_to_channel(alert, channel_name, channel)
        except DeliveryError as exc:
            _on_failure(exc)
            raise
        ttl = int(res.config.workers.alert_days * 86400)
        connection.set(delivered_key, str(time.time()), ex=ttl)
        log.info("alert_delivered", rule=alert.rule_id, title=alert.item.title)
        return "delivered"
    finally:
        structlog.contextvars.unbind_contextvars("alert_id", "channel")


def _on_failure(exc: DeliveryError) -> None:
    job = get_current_job()
    retries_left = job.retries_left if job is not None else None
    if not exc.transient and job is not None:
        job.retries_left = 0  # a permanent failure (e.g. 404) is not worth retrying
        retries_left = 0
    log.warning(
        "alert_delivery_failed",
        reason=exc.reason,
        status=exc.status,
        transient=exc.transient,
        retries_left=retries_left or 0,
        final=not retries_left,
    )
