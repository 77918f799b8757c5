"""Fault tests: real wirewatch processes, real servers on loopback, things breaking.

Each test runs ``wirewatch run`` (with its embedded Redis) or ``wirewatch poll`` and
``wirewatch work`` against a Redis it started itself, polling a local feed server every
second, and then breaks something: the webhook receiver (refused, 503, 429), a worker
(SIGKILL mid-delivery, mid-batch), the poller (SIGKILL), the SMTP server, Redis itself,
or a receiver that answers 404 forever. Each asserts what the product promises: every
alert arrives, none twice under different ids, nothing is dropped silently, and a dead
worker's work is picked up again within a minute (recovery times are printed; run with
``-s`` to see them).

The harness is :mod:`procs`. Every process and server is stopped at teardown, and every
wait has a deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from feedserver import FeedServer, rss
from procs import Proc, Procs, ReceiverOnPort, kill_tree, wait_until
from receivers import Reply, SmtpSink, WebhookReceiver, free_port
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from monitor.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

RULE = "China AND Russia"
# Retries come fast and without jitter, so the tests are quick and their timing known.
FAST_RETRY = "{attempts: 10, first_delay: 1, factor: 2, max_delay: 2, jitter: 0}"
RECOVERY_LIMIT_S = 60.0


def story(n: int) -> tuple[str, str]:
    """A matching item: (guid, headline)."""
    return f"story-{n}", f"China and Russia sign accord number {n}"


def other(n: int) -> tuple[str, str]:
    """An item that matches no rule."""
    return f"other-{n}", f"Weather in Lisbon, report {n}"


def write_config(
    tmp_path: Path,
    feed_url: str,
    channels: str,
    *,
    ner: bool = False,
    batch_size: int = 100,
    extra: str = "",
) -> Path:
    """``tmp_path/wirewatch.yaml``: one feed polled every second, one rule, ``channels``.

    The feed's interval is pinned to 1 s (no adaptive slowing down of a quiet feed), so
    an item added by a test is seen within about a second; and a poll's lease is short
    (6 s), so a feed whose poller was killed mid-poll is due again within seconds.
    """
    names = [line.split(":")[0].strip() for line in channels.strip().splitlines()]
    path = tmp_path / "wirewatch.yaml"
    path.write_text(f"""
redis: {{data_dir: data}}
poller: {{interval: 1, batch_size: {batch_size}, connect_timeout: 2, read_timeout: 5,
          total_timeout: 5, lease_margin: 1}}
workers: {{processes: 1, ner: {{enabled: {str(ner).lower()}}}}}
logging: {{format: json}}
delivery: {{retry: {FAST_RETRY}}}
{extra}
feeds:
  - {{url: "{feed_url}", name: "Fault wire", interval: 1, min_interval: 1, max_interval: 1}}
channels:
{channels}
rules:
  - {{id: china-russia, query: '{RULE}', channels: [{", ".join(names)}]}}
""")
    return path


def webhook_channel(receiver: WebhookReceiver, timeout: float = 5) -> str:
    return (
        f'  hook: {{type: webhook, url: "{receiver.url}", secret: "{receiver.secret}", '
        f"timeout: {timeout}}}"
    )


def raised_ids(*processes: Proc) -> list[str]:
    """Alert ids of every ``alert_raised`` event of these processes, repeats kept."""
    return [e["alert_id"] for p in processes for e in p.events("alert_raised")]


def logged_alert_ids(*processes: Proc) -> list[str]:
    """Alert ids delivered to the ``log`` channel (one ``alert`` event each)."""
    return [e["alert_id"] for p in processes for e in p.events("alert")]


def accepted(receiver: WebhookReceiver) -> Counter[str | None]:
    """How often the receiver answered 200 to each webhook-id."""
    return Counter(hook.id for hook in receiver.received if hook.status == 200)


@pytest.fixture
def tcp_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, on a free TCP port, with an append-only file."""
    server = RedisServer(tmp_path / "redis", port=free_port()).start()
    yield server
    server.stop()


def test_webhook_receiver_refusing_then_failing_then_recovering(
    tmp_path: Path, feed_server: FeedServer, procs: Procs
) -> None:
    receiver = ReceiverOnPort(free_port())  # nothing listens on its port yet
    try:
        entries = [story(1), story(2), story(3), other(1), other(2)]
        write_config(
            tmp_path, feed_server.set("/wire.xml", rss(*entries)), webhook_channel(receiver)
        )
        service = procs.start("run")
        ids = {e["alert_id"] for e in service.wait_event("alert_raised", 60, count=3)}

        def refused_twice() -> bool:
            refused = Counter(
                e["alert_id"]
                for e in service.events("alert_delivery_failed")
                if e["status"] is None and "ConnectError" in e["reason"]
            )
            return all(refused[alert] >= 2 for alert in ids)

        wait_until(refused_twice, 30, "two refused connections per alert")
        retry_after = Reply(429, headers={"Retry-After": "3"})  # longer than max_delay
        receiver.respond_with(503, 503, 503, retry_after, retry_after, retry_after)
        receiver.start()
        wait_until(lambda: set(accepted(receiver)) == ids, 60, "every alert accepted")
        time.sleep(2)  # room for a stray repeat to show up
    finally:
        procs.stop_all()
        receiver.stop()

    assert len(ids) == 3
    assert all(hook.verified for hook in receiver.received)
    assert accepted(receiver) == Counter(dict.fromkeys(ids, 1)), "each alert once, by id"
    assert [hook.status for hook in receiver.received][:6] == [503, 503, 503, 429, 429, 429]
    failures = service.events("alert_delivery_failed")
    assert not any(e["final"] for e in failures)
    assert {e["status"] for e in failures} == {None, 503, 429}
    assert all(e["retry_in_s"] >= 3 for e in failures if e["status"] == 429), "Retry-After"
    assert sorted(e["alert_id"] for e in service.events("alert_delivered")) == sorted(ids)
    assert not service.events("alert_dead")


def test_worker_killed_mid_delivery_is_recovered(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver, procs: Procs
) -> None:
    receiver = webhook_receiver
    receiver.respond_with(Reply(200, delay=8))  # the kill lands while the POST waits
    write_config(
        tmp_path,
        feed_server.set("/wire.xml", rss(story(1), other(1))),
        webhook_channel(receiver, 10),
    )
    service = procs.start("run")
    [alert] = {e["alert_id"] for e in service.wait_event("alert_raised", 60)}
    receiver.wait_for(1, timeout=30)
    [worker] = service.children("work")
    killed = kill_tree(worker.pid)
    killed_at = time.monotonic()
    # The worker (which runs the delivery itself: workers.fork is false) and its scheduler.
    assert len(killed) >= 2, "the worker and its scheduler"

    def redelivered() -> bool:
        return len(receiver.received) >= 2

    wait_until(redelivered, RECOVERY_LIMIT_S, "the alert delivered again")
    recovery = time.monotonic() - killed_at
    print(f"\nworker killed mid-delivery: delivered again {recovery:.1f}s after the kill")
    delivered = service.wait_event("alert_delivered", 10)
    time.sleep(2)
    procs.stop_all()

    assert {hook.id for hook in receiver.received} == {alert}, "one id, however many sends"
    assert all(hook.verified for hook in receiver.received)
    assert [e["alert_id"] for e in delivered] == [alert]
    assert service.events("worker_process_exited"), "the supervisor saw the worker die"
    assert not service.events("alert_dead")
    assert recovery < RECOVERY_LIMIT_S


def test_worker_killed_mid_batch_is_recovered(
    tmp_path: Path, tcp_redis: RedisServer, feed_server: FeedServer, procs: Procs
) -> None:
    # 300 items with long summaries: NER keeps one batch busy for seconds.
    filler = " ".join(
        f"Officials in Paris and Berlin met Angela Merkel on day {n}." for n in range(8)
    )
    entries = [story(n) if n % 10 == 0 else other(n) for n in range(300)]
    feed = rss(*entries).replace("&lt;/p&gt;", f" {filler}&lt;/p&gt;")
    write_config(
        tmp_path,
        feed_server.set("/wire.xml", feed),
        "  console: {type: log}",
        ner=True,
        batch_size=300,
    )
    procs.env["REDIS_URL"] = tcp_redis.url
    first = procs.start("work")
    first.wait_event("worker_started", 30)
    poller = procs.start("poll")
    connection = redis.Redis.from_url(tcp_redis.url)
    try:
        started = StartedJobRegistry(
            "wirewatch:items", connection=connection, serializer=JSONSerializer
        )
        wait_until(lambda: started.get_job_ids(cleanup=False), 60, "the batch job started")
        kill_tree(first.pid)
        killed_at = time.monotonic()
        assert not first.events("batch_processed"), "the kill came too late"
        second = procs.start("work")
        wait_until(lambda: second.events("batch_processed"), RECOVERY_LIMIT_S, "the batch redone")
        recovery = time.monotonic() - killed_at
        print(f"\nworker killed mid-batch: batch completed {recovery:.1f}s after the kill")
        wait_until(lambda: len(logged_alert_ids(second)) >= 30, 30, "30 alerts delivered")
        polls = feed_server.hits("/wire.xml")
        wait_until(lambda: feed_server.hits("/wire.xml") >= polls + 2, 15, "two more polls")
        time.sleep(1)
    finally:
        connection.close()
        procs.stop_all()

    [batch] = second.events("batch_processed")
    assert batch["items"] == 300 and batch["new"] == 300 and batch["duplicates"] == 0
    assert batch["alerts"] + len(raised_ids(first)) == 30
    raised = raised_ids(first, second)
    assert len(raised) == len(set(raised)) == 30, "every matching item alerts once"
    logged = logged_alert_ids(first, second)
    assert sorted(logged) == sorted(raised), "each alert delivered once"
    assert sum(e["new"] for e in poller.events("feed_polled")) == 300
    assert recovery < RECOVERY_LIMIT_S


def test_poller_killed_and_restarted_skips_nothing_repeats_nothing(
    tmp_path: Path, tcp_redis: RedisServer, feed_server: FeedServer, procs: Procs
) -> None:
    entries = [story(1), story(2), other(1)]
    feed_url = feed_server.set("/wire.xml", rss(*entries))
    write_config(tmp_path, feed_url, "  console: {type: log}")
    procs.env["REDIS_URL"] = tcp_redis.url
    worker = procs.start("work")
    pollers = [procs.start("poll")]
    wait_until(lambda: len(logged_alert_ids(worker)) >= 2, 60, "the first two alerts")

    # Kill 1: while the poller waits for the feed server (a slow answer).
    entries.append(story(3))
    hits = feed_server.hits("/wire.xml")
    feed_server.set("/wire.xml", rss(*entries), delay=0.5)
    wait_until(lambda: feed_server.hits("/wire.xml") > hits, 10, "a poll under way")
    pollers[-1].kill()
    entries.append(story(4))  # appears while no poller runs
    feed_server.set("/wire.xml", rss(*entries))
    pollers.append(procs.start("poll"))
    wait_until(lambda: len(logged_alert_ids(worker)) >= 4, 30, "stories 3 and 4")

    # Kill 2: just after the feed answered, while the poller parses and enqueues.
    entries.append(story(5))
    hits = feed_server.hits("/wire.xml")
    feed_server.set("/wire.xml", rss(*entries))
    wait_until(lambda: feed_server.hits("/wire.xml") > hits, 10, "a poll under way", every=0.005)
    time.sleep(0.05)
    pollers[-1].kill()
    pollers.append(procs.start("poll"))
    wait_until(lambda: len(logged_alert_ids(worker)) >= 5, 30, "story 5")
    polls = feed_server.hits("/wire.xml")
    wait_until(lambda: feed_server.hits("/wire.xml") >= polls + 3, 15, "three more polls")
    time.sleep(1)
    procs.stop_all()

    titles = sorted(e["title"] for e in worker.events("alert"))
    assert titles == sorted(story(n)[1] for n in range(1, 6)), "each story alerted once"
    raised = raised_ids(worker)
    assert len(raised) == len(set(raised)) == 5


def test_smtp_server_down_then_up(tmp_path: Path, feed_server: FeedServer, procs: Procs) -> None:
    sink = SmtpSink()  # its port is chosen, but nothing listens there until start()
    running = False
    try:
        channel = (
            '  desk: {type: email, to: ["desk@example.org"], from: "ww@example.org", '
            f"smtp: {{host: 127.0.0.1, port: {sink.port}, timeout: 5}}}}"
        )
        write_config(tmp_path, feed_server.set("/wire.xml", rss(story(1), other(1))), channel)
        service = procs.start("run")
        [alert] = {e["alert_id"] for e in service.wait_event("alert_raised", 60)}
        service.wait_event("alert_delivery_failed", 30, count=2)
        sink.start()
        running = True
        [mail] = sink.wait_for(1, timeout=30)
        service.wait_event("alert_delivered", 10)
        time.sleep(2)
        procs.stop_all()
        assert len(sink.messages) == 1
    finally:
        procs.stop_all()
        if running:
            sink.stop()
    assert alert in mail.message["Message-ID"]
    assert mail.message["Subject"] == f"[wirewatch] china-russia: {story(1)[1]}"
    assert all(not e["final"] for e in service.events("alert_delivery_failed"))


def test_redis_restart_mid_run(
    tmp_path: Path,
    tcp_redis: RedisServer,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    procs: Procs,
) -> None:
    entries = [story(1), other(1)]
    write_config(
        tmp_path, feed_server.set("/wire.xml", rss(*entries)), webhook_channel(webhook_receiver)
    )
    procs.env["REDIS_URL"] = tcp_redis.url
    worker = procs.start("work")
    poller = procs.start("poll")
    [first] = webhook_receiver.wait_for(1, timeout=60)
    worker.wait_event("alert_delivered", 10)
    time.sleep(1)  # the worker is idle (a busy one is the next test)

    tcp_redis.stop()  # SIGTERM: redis-server writes its append-only file and exits
    time.sleep(3)
    tcp_redis.start()  # same port, same data folder
    entries.append(story(2))
    feed_server.set("/wire.xml", rss(*entries))
    [_, second] = webhook_receiver.wait_for(2, timeout=60)
    polls = feed_server.hits("/wire.xml")
    wait_until(lambda: feed_server.hits("/wire.xml") >= polls + 3, 15, "three more polls")
    time.sleep(2)
    assert worker.alive() and poller.alive(), "they reconnected without a restart"
    procs.stop_all()

    assert first.json["item"]["title"] == story(1)[1]
    assert second.json["item"]["title"] == story(2)[1]
    assert [hook.status for hook in webhook_receiver.received] == [200, 200], "no repeat"
    assert len(set(raised_ids(worker))) == 2


def test_redis_restart_while_worker_busy(
    tmp_path: Path,
    tcp_redis: RedisServer,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    procs: Procs,
) -> None:
    webhook_receiver.respond_with(Reply(200, delay=8))  # the job runs through the outage
    write_config(
        tmp_path,
        feed_server.set("/wire.xml", rss(story(1), other(1))),
        webhook_channel(webhook_receiver, 15),
    )
    procs.env["REDIS_URL"] = tcp_redis.url
    worker = procs.start("work")
    procs.start("poll")
    webhook_receiver.wait_for(1, timeout=60)
    tcp_redis.stop()
    time.sleep(6)  # longer than rq's 5 s job-monitoring beat
    tcp_redis.start()
    worker.wait_event("alert_delivered", 15)
    assert worker.alive(), worker.tail()


def test_redis_restart_mid_run_retries_still_run(
    tmp_path: Path,
    tcp_redis: RedisServer,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    procs: Procs,
) -> None:
    entries = [story(1), other(1)]
    write_config(
        tmp_path, feed_server.set("/wire.xml", rss(*entries)), webhook_channel(webhook_receiver)
    )
    procs.env["REDIS_URL"] = tcp_redis.url
    procs.start("work")
    procs.start("poll")
    webhook_receiver.wait_for(1, timeout=60)
    tcp_redis.stop()
    time.sleep(3)
    tcp_redis.start()
    webhook_receiver.respond_with(503)  # the new alert's first try fails: a retry is due in 1 s
    entries.append(story(2))
    feed_server.set("/wire.xml", rss(*entries))
    webhook_receiver.wait_for(2, timeout=30)
    # The Redis outage killed rq's scheduler process; the worker's maintenance pass (every
    # 10 s, between waits of up to 10 s) starts a new one, which then runs the retry:
    # about 20 s at worst, more on a loaded machine.
    [_, refused, retried] = webhook_receiver.wait_for(3, timeout=45)
    assert refused.status == 503 and retried.status == 200 and retried.id == refused.id


def test_receiver_answering_404_dead_letter_then_replay(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver, procs: Procs
) -> None:
    receiver = webhook_receiver
    # One 404 is all it takes: a 404 is final, so any second request would be a bug
    # (and would get a 200, and no dead letter).
    receiver.respond_with(Reply(404, body="no such hook"))
    write_config(
        tmp_path, feed_server.set("/wire.xml", rss(story(1), other(1))), webhook_channel(receiver)
    )
    service = procs.start("run")
    [alert] = {e["alert_id"] for e in service.wait_event("alert_raised", 60)}
    service.wait_event("alert_dead", 30)
    time.sleep(2)  # a 404 is not retried: no second request comes

    [letter] = [json.loads(line) for line in procs.cli("alerts", "dead", "--json").splitlines()]
    assert letter["target"] == alert and letter["channel"] == "hook"
    assert "HTTP 404" in letter["reason"]
    [attempt] = letter["attempts"]
    assert attempt["status"] == 404 and attempt["transient"] is False and attempt["attempt"] == 1
    assert "no such hook" in attempt["reason"]
    assert [hook.status for hook in receiver.received] == [404]

    assert procs.cli("alerts", "replay", "--all").strip() == f"replaying {letter['id']}"
    [_, replayed] = receiver.wait_for(2, timeout=30)
    assert replayed.id == alert and replayed.status == 200 and replayed.verified
    assert procs.cli("alerts", "dead", "--json").strip() == ""
    summaries: list[dict[str, Any]] = [
        json.loads(line) for line in procs.cli("alerts", "list", "--json").splitlines()
    ]
    procs.stop_all()
    assert [(s["id"], s["channels"]) for s in summaries] == [(alert, {"hook": "delivered"})]
