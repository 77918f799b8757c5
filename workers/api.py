"""The public surface of ``workers`` used by the CLI (the composition root)."""

from __future__ import annotations

from monitor.config import Config
from workers.match import check_queries as _check_queries
from workers.worker import run_worker

__all__ = ["query_problems", "run_worker"]


def query_problems(config: Config) -> list[str]:
    """One message per rule whose query does not parse, naming the rule and position."""
    return [f"rules.{index}.query: {message}" for index, message in _check_queries(config.rules)]
