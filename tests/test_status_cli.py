"""``wirewatch status`` (table and ``--json``) as a subprocess against the test Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from feedserver import FeedServer, rss

from monitor.config_loader import load_config
from monitor.keys import Keys
from monitor.poller import Poller
from monitor.shared_schedule import SharedSchedule


def status(config: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_status_table_and_json(
    tmp_path: Path, feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    ok = feed_server.set("ok.xml", rss(("a", "Alpha")))
    down = feed_server.set("down.xml", "oops", status=503)
    path = tmp_path / "wirewatch.yaml"
    path.write_text(f"""
redis: {{prefix: "{prefix}"}}
poller: {{failing_after: 2, connect_timeout: 1, total_timeout: 2}}
feeds:
  - {{url: "{ok}", name: "Good wire", interval: 60}}
  - {{url: "{down}", name: "Bad wire", interval: 60}}
  - {{url: "http://never.example/feed.xml", name: "Not yet", interval: 60}}
""")
    config = load_config(path)

    async def main() -> None:
        async with Poller(config, redis_url) as poller:
            await poller.poll_feed(config.feeds[0])
            for _ in range(2):
                await poller.poll_feed(config.feeds[1])
            schedule = SharedSchedule(poller._context.client, Keys(prefix))
            await schedule.sync(config, lease=poller.lease)

    asyncio.run(main())

    table = status(path, redis_url)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.strip().splitlines()
    assert header.split()[:2] == ["FEED", "STATE"]
    by_name = {row.split("  ")[0].strip(): row for row in rows[:3]}
    assert set(by_name) == {"Good wire", "Bad wire", "Not yet"}
    assert "healthy" in by_name["Good wire"] and "ago" in by_name["Good wire"]
    assert "failing" in by_name["Bad wire"] and "HTTP 503" in by_name["Bad wire"]
    assert "unknown" in by_name["Not yet"] and "never" in by_name["Not yet"]
    assert "3 feeds, 1 failing or gone" in table.stdout

    done = status(path, redis_url, "--json")
    assert done.returncode == 0, done.stderr
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["feed"] for o in objects] == ["Good wire", "Bad wire", "Not yet"]
    good, bad, never = objects
    assert set(good) == {
        "feed",
        "url",
        "state",
        "last_success",
        "failures",
        "last_error",
        "last_status",
        "items_per_day",
        "next_poll",
        "interval",
    }
    assert (good["state"], good["failures"], good["last_status"]) == ("healthy", 0, 200)
    assert good["last_success"].endswith("Z") and good["next_poll"] is not None
    assert (bad["state"], bad["failures"], bad["last_error"]) == (
        "failing",
        2,
        "HTTP 503 Service Unavailable",
    )
    assert bad["last_success"] is None
    assert (never["state"], never["items_per_day"]) == ("unknown", 0)
