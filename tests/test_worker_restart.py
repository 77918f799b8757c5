"""The worker's own loop around rq's: when rq's loop ends without a stop request (Redis
went away), it starts a new one after a pause that doubles while Redis stays away, and
starts over from 1 s after a loop that ran well (the pause was never reset: after one
outage early in a worker's life, every later blip cost 30 s without processing)."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.config_loader import parse_config
from workers import worker as worker_module


class _Loop:
    """Stands in for rq's worker: each ``work()`` lasts ``seconds`` of the fake clock."""

    def __init__(self, seconds: float, clock: list[float], stop: bool) -> None:
        self.seconds, self.clock, self.stop = seconds, clock, stop
        self.name = "fake"
        self._stop_requested = stop
        self._shutdown_requested_date = None
        self.reload: Any = None

    def queue_names(self) -> list[str]:
        return []

    def work(self, **_options: object) -> bool:
        self.clock[0] += self.seconds
        return True


def test_the_restart_pause_doubles_then_starts_over_after_a_healthy_run(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str
) -> None:
    clock = [0.0]
    # Loops that end after 1 s, 1 s, 1 s, then one that ran 10 minutes, then 1 s; the
    # last is asked to stop.
    runs = iter([(1, False), (1, False), (1, False), (600, False), (1, False), (1, True)])
    pauses: list[float] = []
    monkeypatch.setattr(worker_module, "new_worker", lambda *_a: _next(runs, clock))
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(worker_module.time, "sleep", lambda s: pauses.append(s))
    config = parse_config(
        f"redis: {{prefix: '{prefix}'}}\nworkers: {{ner: {{enabled: false}}}}\n", "w.yaml", {}
    )
    worker_module.run_worker(config, redis_url)
    assert pauses == [1.0, 2.0, 4.0, 1.0, 2.0]


def _next(runs: Any, clock: list[float]) -> _Loop:
    seconds, stop = next(runs)
    return _Loop(float(seconds), clock, stop)
