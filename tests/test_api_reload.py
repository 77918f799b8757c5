"""Hot reload of what the HTTP API serves: a real ``wirewatch serve`` process (file change
and SIGHUP; an invalid config is rejected and the old one stays served), and the
scrubber learning a new config's secrets."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from typing import Any

import pytest
from procs import Proc, Procs, wait_until
from test_reload import config_text

from monitor.api_security import MASK, Scrubber
from monitor.config_loader import parse_config


def rule_ids(base: str) -> list[str]:
    with urllib.request.urlopen(f"{base}/api/rules", timeout=5) as response:
        body: dict[str, Any] = json.load(response)
    return [item["id"] for item in body["items"]]


def api_base(proc: Proc) -> str:
    [started] = proc.wait_event("api_started", 20)
    return str(started["urls"][0]).rstrip("/")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_serve_reloads_on_a_file_change_and_on_sighup_and_keeps_a_valid_config(
    procs: Procs, redis_url: str, prefix: str
) -> None:
    extra = f"redis: {{url: '{redis_url}', prefix: '{prefix}'}}"
    procs.config.write_text(config_text({}, {"china": "China"}, extra=extra))
    api = procs.start("serve", "--port", "0")
    base = api_base(api)
    assert rule_ids(base) == ["china"]

    procs.config.write_text(config_text({}, {"china": "China", "lisbon": "Lisbon"}, extra=extra))
    assert api.wait_event("config_reloaded", 15, role="api")[0]["rules_added"] == ["lisbon"]
    assert rule_ids(base) == ["china", "lisbon"]

    # Behind the watcher's back (same size, inode and mtime), then SIGHUP: the API
    # stays up (SIGHUP's default action would end it) and serves the new rules.
    before = procs.config.read_text()
    after = config_text({}, {"china": "China", "porto": "Porto!"}, extra=extra)
    after += " " * (len(before) - len(after))
    assert len(after) == len(before)
    mark = procs.config.stat()
    procs.config.write_text(after)
    os.utime(procs.config, ns=(mark.st_atime_ns, mark.st_mtime_ns))
    os.kill(api.pid, signal.SIGHUP)
    reload = api.wait_event("config_reloaded", 15, count=2, role="api")[1]
    assert reload["trigger"] == "sighup" and reload["rules_added"] == ["porto"]
    assert rule_ids(base) == ["china", "porto"]

    # An invalid config is rejected with its errors; the last valid one is still served.
    procs.config.write_text(config_text({}, {"china": "China AND ("}, extra=extra))
    [rejected] = api.wait_event("config_reload_rejected", 15, role="api")
    assert any("china" in error for error in rejected["errors"])
    assert rule_ids(base) == ["china", "porto"]
    assert api.alive()
    assert api.stop() == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_api_of_run_serves_the_reloaded_rules(
    procs: Procs, redis_url: str, prefix: str
) -> None:
    extra = f"redis: {{url: '{redis_url}', prefix: '{prefix}'}}\napi: {{enabled: true, port: 0}}"
    procs.config.write_text(config_text({}, {"china": "China"}, extra=extra))
    service = procs.start("run")
    base = api_base(service)
    assert rule_ids(base) == ["china"]
    procs.config.write_text(config_text({}, {"china": "China", "lisbon": "Lisbon"}, extra=extra))
    service.wait_event("config_reloaded", 15, role="service")
    wait_until(lambda: rule_ids(base) == ["china", "lisbon"], 5, "the API shows the new rule")


def test_the_scrubber_masks_the_secrets_of_a_reloaded_config_and_keeps_the_old_ones() -> None:
    def config(secret: str) -> Any:
        text = f"channels:\n  hook: {{type: webhook, url: 'http://h/', secret: 'whsec_{secret}'}}\n"
        return parse_config(text, "x.yaml", {})

    old, new = "A" * 32, "B" * 32
    scrub = Scrubber(config(old), token=None)
    assert new in scrub(f"whsec_{new}")
    scrub.learn(config(new))
    assert scrub(f"whsec_{old} whsec_{new}") == f"{MASK} {MASK}"
