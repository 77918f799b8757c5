"""``wirewatch run`` killed outright (``kill -9``, the OOM killer): its rq workers and its
embedded Redis end with it (monitor/child_death.py), instead of living on as orphans —
workers taking jobs for a service nobody runs, a Redis whose append-only file the next
``wirewatch run`` would open a second time."""

from __future__ import annotations

import contextlib
import signal
import sys

import psutil
import pytest
from feedserver import FeedServer, rss
from procs import Procs, wait_until
from test_reload import config_text


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_workers_and_the_embedded_redis_end_when_run_is_killed(
    feed_server: FeedServer, procs: Procs
) -> None:
    feed = feed_server.set("/a.xml", rss(("w-1", "China and Russia sign an accord")))
    procs.config.write_text(config_text({"Wire A": feed}, {"cr": "China AND Russia"}))
    service = procs.start("run")
    service.wait_event("alert", 40, rule="cr")
    children = psutil.Process(service.pid).children()
    names = sorted(child.name() for child in children)
    assert any("redis" in name for name in names), names
    assert len(service.children("work")) == 1

    service.process.send_signal(signal.SIGKILL)
    service.process.wait(10)

    def all_gone() -> bool:
        return not any(child.is_running() and child.status() != "zombie" for child in children)

    try:
        wait_until(all_gone, 30, "the workers and the embedded Redis to end")
    finally:  # never leave orphans behind a failing run
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
