"""Poll counters and the periodic ``poller_summary`` log line.

Role: keep the operator's view of a busy poller without one info line per poll. An
unchanged poll (304, or the same body) logs ``feed_polled`` at *debug* only — at
thousands of polls a second one JSON line each cost ~9 % of the poller's CPU — so every
:data:`SUMMARY_EVERY` seconds the poller logs one ``poller_summary`` line at info: polls
by outcome (``changed``, ``unchanged``, ``failed``), new items, and bodies parsed in part
(``partial``: only the new entries, see :mod:`monitor.parse_partial`) or whole.

Changed polls and failures still log their own info/warning line each.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

SUMMARY_EVERY = 60.0  # seconds between two poller_summary lines


@dataclass(slots=True)
class PollStats:
    """Counts since the last summary; :meth:`take` returns them and starts afresh."""

    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    new_items: int = 0
    parsed_partial: int = 0
    parsed_whole: int = 0

    def take(self) -> dict[str, Any]:
        counts = {field.name: getattr(self, field.name) for field in fields(self)}
        for field in fields(self):
            setattr(self, field.name, 0)
        return counts

    @property
    def polls(self) -> int:
        return self.changed + self.unchanged + self.failed
