"""Deployment: the container health checks (``python -m monitor.healthcheck``) against
real ``wirewatch poll`` and ``work`` processes on the test session's Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from feedserver import FeedServer, rss
from procs import Procs, wait_until
from test_reload import config_text


def healthcheck(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "monitor.healthcheck", *args],
        env={**env, "WIREWATCH_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_health_checks_follow_the_poller_and_the_worker(
    feed_server: FeedServer, procs: Procs, redis_url: str, prefix: str
) -> None:
    feed = feed_server.set("/a.xml", rss(("w-1", "Weather in Porto")))
    extra = f"redis: {{url: '{redis_url}', prefix: '{prefix}'}}"
    procs.config.write_text(config_text({"Wire A": feed}, {"r": "China"}, extra=extra))
    assert healthcheck(procs.config, "poller").returncode == 1  # nothing runs yet
    poller, worker = procs.start("poll"), procs.start("work")
    poller.wait_event("poller_started", 20)
    worker.wait_event("worker_started", 20)
    wait_until(lambda: healthcheck(procs.config, "poller").returncode == 0, 10, "poller ok")
    wait_until(lambda: healthcheck(procs.config, "worker").returncode == 0, 10, "worker ok")
    poller.stop()
    failed = healthcheck(procs.config, "poller")
    assert failed.returncode == 1 and "no live poller" in failed.stderr
    assert healthcheck(procs.config, "api", "--port", "1").returncode == 1
