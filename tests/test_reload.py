"""Hot reload: real ``wirewatch run`` / ``poll`` + ``work`` processes whose config changes.

Each process test starts real processes (harness: :mod:`procs`) polling a local feed
server every second, then changes the config file (or sends SIGHUP, with the change
hidden from the file watcher) and asserts what an operator relies on: a new rule alerts
on the next batch, a new feed is polled, a removed one is not, the worker count
follows ``workers.processes``, an invalid config is rejected with every error while
the old one keeps alerting, and work in flight during a reload (a poll, a delivery)
completes. The pure part (:mod:`monitor.config_diff`) is tested first, without
processes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from feedserver import FeedServer, rss
from procs import Proc, Procs, wait_until
from receivers import Reply, WebhookReceiver

from monitor.config_diff import POLLER_RESTART_ONLY, diff_configs, split_restart
from monitor.config_loader import parse_config

LISBON = "Strike closes the port of Lisbon"


def config_text(
    feeds: dict[str, str],
    rules: dict[str, str],
    *,
    channels: str = "console: {type: log}",
    channel: str = "console",
    processes: int = 1,
    extra: str = "",
) -> str:
    """A config polling ``feeds`` (name → URL) every second, with ``rules`` (id → query)."""
    feed_lines = "".join(
        f'  - {{url: "{url}", name: "{name}", interval: 1, min_interval: 1, max_interval: 1}}\n'
        for name, url in feeds.items()
    )
    rule_lines = "".join(
        f"  - {{id: {rid}, query: '{query}', channels: [{channel}]}}\n"
        for rid, query in rules.items()
    )
    return f"""{extra}
poller: {{interval: 1, connect_timeout: 2, read_timeout: 5, total_timeout: 6, lease_margin: 2}}
workers: {{processes: {processes}, ner: {{enabled: false}}, stories: {{enabled: false}}}}
logging: {{format: json}}
delivery: {{retry: {{attempts: 5, first_delay: 1, factor: 2, max_delay: 2, jitter: 0}}}}
feeds: {"" if feed_lines else "[]"}
{feed_lines}channels:
  {channels}
rules: {"" if rule_lines else "[]"}
{rule_lines}"""


def alerts_for(rule: str, *processes: Proc) -> list[str]:
    """Titles logged by the ``log`` channel for ``rule``."""
    return [e["title"] for p in processes for e in p.events("alert") if e["rule"] == rule]


def reloaded(proc: Proc, role: str, count: int = 1, timeout: float = 15) -> dict[str, object]:
    return proc.wait_event("config_reloaded", timeout, count=count, role=role)[count - 1]


# -- the pure core ---------------------------------------------------------------------


def test_diff_names_what_changed_and_never_a_value() -> None:
    old = parse_config(
        config_text({"A": "http://a/", "B": "http://b/"}, {"r1": "China", "r2": "Russia"})
        + "\nterm_sets: {aid: [aid]}",
        "old",
        {},
    )
    new_text = config_text(
        {"A": "http://a/", "C": "http://c/"}, {"r1": "China AND aid", "r3": "Lisbon"}
    ).replace("interval: 1, connect", "interval: 5, connect")
    channels = 'hook: {type: webhook, url: "http://h/", secret: "whsec_' + "B" * 32 + '"}'
    new = parse_config(
        new_text.replace("console: {type: log}", channels).replace("[console]", "[hook]"), "new", {}
    )
    changes = diff_configs(old, new)
    assert changes.feeds_added == ("C",) and changes.feeds_removed == ("B",)
    assert changes.rules_added == ("r3",) and changes.rules_removed == ("r2",)
    assert changes.rules_changed == ("r1",)
    assert changes.channels_added == ("hook",) and changes.channels_removed == ("console",)
    assert "poller.interval" in changes.settings and "term_sets.aid" in changes.settings
    assert "B" * 32 not in repr(changes.as_fields())
    assert not diff_configs(old, old)


def test_settings_that_need_a_restart_keep_their_old_value() -> None:
    old = parse_config(config_text({}, {}, extra="redis: {prefix: 'a:'}"), "old", {})
    text = config_text({}, {}, extra="redis: {prefix: 'b:'}").replace(
        "lease_margin: 2}", "lease_margin: 2, concurrency: 7, max_backoff: 99}"
    )
    new = parse_config(text, "new", {})
    applied, restart = split_restart(old, new, ("redis.url", "redis.prefix", *POLLER_RESTART_ONLY))
    assert restart == ["redis.prefix", "poller.concurrency"]
    assert applied.redis.prefix == "a:" and applied.poller.concurrency == old.poller.concurrency
    assert applied.poller.max_backoff == 99  # everything else is applied


def test_a_fix_in_a_file_only_the_rejected_config_includes_is_seen(tmp_path: Path) -> None:
    """The rejected config added an include whose file had the error: fixing that file
    alone is a change the watcher sees (it watched only the running config's files)."""
    from monitor.config_loader import load_config
    from monitor.reload import ConfigWatcher

    config = tmp_path / "wirewatch.yaml"
    base = config_text({"A": "http://a.test/"}, {})
    config.write_text(base)
    watcher = ConfigWatcher(load_config(config), role="test")
    applied: list[object] = []
    assert not watcher.check(applied.append)  # the first look: nothing new
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "b.yaml").write_text('- {url: "http://a.test/"}\n')  # a duplicate
    config.write_text('include: ["feeds/*.yaml"]\n' + base)
    assert not watcher.check(applied.append)  # rejected: duplicate feed
    time.sleep(0.01)
    (tmp_path / "feeds" / "b.yaml").write_text('- {url: "http://b.test/", name: B}\n')
    assert watcher.check(applied.append)
    assert [feed.url for feed in watcher.config.feeds] == ["http://a.test/", "http://b.test/"]


# -- real processes --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_run_adopts_a_changed_file_new_rule_new_feed_more_workers(
    tmp_path: Path, feed_server: FeedServer, procs: Procs
) -> None:
    wire = [("w-1", "China and Russia sign an accord"), ("w-2", "Weather in Porto")]
    a = feed_server.set("/a.xml", rss(*wire))
    b = feed_server.set("/b.xml", rss(("b-1", LISBON)))
    procs.config.write_text(config_text({"Wire A": a}, {"china-russia": "China AND Russia"}))
    service = procs.start("run")
    service.wait_event("alert", 30, rule="china-russia")
    assert feed_server.hits("/b.xml") == 0

    procs.config.write_text(
        config_text(
            {"Wire A": a, "Wire B": b},
            {"china-russia": "China AND Russia", "lisbon": "Lisbon"},
            processes=2,
        )
    )
    event = reloaded(service, "service")
    assert event["feeds_added"] == ["Wire B"] and event["rules_added"] == ["lisbon"]
    assert event["trigger"] == "file" and "workers.processes" in event["settings"]
    # The new feed is polled; the new rule alerts on its item and on a new item of A.
    feed_server.set("/a.xml", rss(*wire, ("w-3", "Lisbon fog delays ferries")))
    wait_until(lambda: len(alerts_for("lisbon", service)) >= 2, 20, "two lisbon alerts")
    assert sorted(alerts_for("lisbon", service)) == sorted([LISBON, "Lisbon fog delays ferries"])
    assert alerts_for("china-russia", service) == ["China and Russia sign an accord"]
    assert service.wait_event("worker_processes_resized", 5)[0]["count"] == 2
    wait_until(lambda: len(service.children("work")) == 2, 10, "a second worker process")
    reloaded(service, "worker")  # the first worker reloaded for itself (the second is new)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sighup_to_run_reloads_the_service_and_is_forwarded_to_its_worker(
    tmp_path: Path, feed_server: FeedServer, procs: Procs
) -> None:
    a = feed_server.set("/a.xml", rss(("w-1", "China and Russia sign an accord")))
    before = config_text({"Wire A": a}, {"china-russia": "China AND Russia"})
    after = config_text({"Wire A": a}, {"china-russia": "China AND Russia", "lisbon": "Lisbon"})
    procs.config.write_text(before + " " * (len(after) - len(before)))
    service = procs.start("run")
    service.wait_event("alert", 30, rule="china-russia")
    service.wait_event("worker_started", 10)

    # Change the file behind the watchers' back: same size, inode and mtime.
    mark = procs.config.stat()
    procs.config.write_text(after)
    os.utime(procs.config, ns=(mark.st_atime_ns, mark.st_mtime_ns))
    again = procs.config.stat()
    assert (again.st_size, again.st_ino, again.st_mtime_ns) == (
        mark.st_size,
        mark.st_ino,
        mark.st_mtime_ns,
    )
    [worker] = service.children("work")
    os.kill(service.pid, signal.SIGHUP)
    requested = service.wait_event("config_reload_requested", 10)[0]
    assert requested["forwarded_to"] == [worker.pid]
    assert reloaded(service, "service")["trigger"] == "sighup"
    assert reloaded(service, "worker")["rules_added"] == ["lisbon"]
    feed_server.set("/a.xml", rss(("w-1", "China and Russia sign an accord"), ("l-1", LISBON)))
    service.wait_event("alert", 20, rule="lisbon")
    assert service.alive()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_invalid_config_is_rejected_with_every_error_and_the_old_one_keeps_alerting(
    tmp_path: Path, feed_server: FeedServer, procs: Procs, redis_url: str, prefix: str
) -> None:
    extra = f"redis: {{url: '{redis_url}', prefix: '{prefix}'}}"
    wire = [("w-1", "China and Russia sign an accord")]
    a = feed_server.set("/a.xml", rss(*wire))
    good = config_text({"Wire A": a}, {"china-russia": "China AND Russia"}, extra=extra)
    procs.config.write_text(good)
    poller, worker = procs.start("poll"), procs.start("work")
    worker.wait_event("alert", 30, rule="china-russia")

    bad = config_text(
        {"Wire A": a}, {"china-russia": "China AND Russia", "broken": "China AND ("}, extra=extra
    ).replace("interval: 1, connect", "intervall: 1, connect")
    procs.config.write_text(bad)
    rejected = poller.wait_event("config_reload_rejected", 10)[0]
    assert any("poller.intervall: unknown setting" in e for e in rejected["errors"])
    # A new item: the worker checks the files before running the batch, rejects them
    # too (the query error included), and alerts with the old rules.
    feed_server.set("/a.xml", rss(*wire, ("w-2", "Russia and China hold talks")))
    errors = worker.wait_event("config_reload_rejected", 20)[0]["errors"]
    assert any("poller.intervall: unknown setting" in e for e in errors)
    assert any(e.startswith("line") and "rules.1.query" in e for e in errors)
    wait_until(lambda: len(alerts_for("china-russia", worker)) == 2, 20, "the second alert")
    assert not poller.events("config_reloaded") and not worker.events("config_reloaded")

    # Fixed (and a setting that only a restart can change): applied, and said so.
    moved = f"redis: {{url: '{redis_url}', prefix: 'elsewhere:'}}"
    procs.config.write_text(
        config_text(
            {"Wire A": a}, {"china-russia": "China AND Russia", "lisbon": "Lisbon"}, extra=moved
        )
    )
    for proc, role in ((poller, "poller"), (worker, "worker")):
        assert reloaded(proc, role)["rules_added"] == ["lisbon"]
        restart = proc.wait_event("config_reload_needs_restart", 5, role=role)[0]
        assert restart["settings"] == ["redis.prefix"]
    feed_server.set("/a.xml", rss(*wire, ("w-2", "Russia and China hold talks"), ("l", LISBON)))
    worker.wait_event("alert", 20, rule="lisbon")  # still on the old prefix's queues


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_poll_and_a_delivery_in_flight_during_reloads_complete(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    procs: Procs,
    redis_url: str,
    prefix: str,
) -> None:
    extra = f"redis: {{url: '{redis_url}', prefix: '{prefix}'}}"
    hook = (
        f'hook: {{type: webhook, url: "{webhook_receiver.url}", '
        f'secret: "{webhook_receiver.secret}", timeout: 10}}'
    )

    def write(feeds: dict[str, str], rules: dict[str, str]) -> None:
        procs.config.write_text(
            config_text(feeds, rules, channels=hook, channel="hook", extra=extra)
        )

    slow = feed_server.set("/slow.xml", rss(("s-1", "China and Russia sign an accord")), delay=3)
    fast = feed_server.set("/fast.xml", rss(("f-1", "Weather in Porto")))
    webhook_receiver.respond_with(Reply(200, delay=4))  # the first delivery takes 4 s
    write({"Slow wire": slow}, {"china-russia": "China AND Russia"})
    poller, worker = procs.start("poll"), procs.start("work")

    # 1. The slow feed is removed while its first poll waits for the response.
    wait_until(lambda: feed_server.hits("/slow.xml") >= 1, 20, "the slow feed's first poll")
    write({"Fast wire": fast}, {"china-russia": "China AND Russia"})
    assert reloaded(poller, "poller")["feeds_removed"] == ["Slow wire"]
    # 2. Its items still go through; the alert's delivery is held by the receiver …
    webhook_receiver.wait_for(1, timeout=20)
    # 3. … while the rule is removed: the delivery in flight completes, once.
    write({"Fast wire": fast}, {"lisbon": "Lisbon"})
    worker.wait_event("alert_delivered", 10, rule="china-russia")
    # The worker reloads only after the delivery it was running when the rule went away.
    worker.wait_event("config_reloaded", 10, role="worker", rules_removed=["china-russia"])
    names = [(e["event"], e.get("rules_removed")) for e in worker.events()]
    delivered = names.index(("alert_delivered", None))
    assert delivered < names.index(("config_reloaded", ["china-russia"]))
    assert [hook.status for hook in webhook_receiver.received] == [200]
    assert feed_server.hits("/slow.xml") == 1  # removed: never polled again
    assert not poller.events("feed_lease_lost")
    assert feed_server.hits("/fast.xml") >= 1  # the added feed is
