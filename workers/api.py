"""The public surface of ``workers`` used by the CLI (the composition root)."""

from __future__ import annotations

from workers.operations import (
    AlertSummary,
    list_alerts,
    list_dead,
    mute_story,
    replay,
    unmute_story,
)
from workers.query import QueryError, parse_query
from workers.worker import run_worker

__all__ = [
    "AlertSummary",
    "list_alerts",
    "list_dead",
    "mute_story",
    "query_error",
    "replay",
    "run_worker",
    "unmute_story",
]


def query_error(rule_id: str, query: str) -> str | None:
    """Why a rule's query does not parse (naming the rule and position), or None."""
    try:
        parse_query(query, rule_id or None)
    except QueryError as exc:
        return str(exc)
    return None
