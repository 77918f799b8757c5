"""First attempts sent by the batch job itself (workers/outbox.py), and its safety nets.

Real parts: the session's Redis, a real webhook receiver, rq burst workers. The crash
case is played with the public steps the batch runs: an alert raised and routed (so it
is in the outbox) whose batch never gets to send it, as when the worker dies there.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
import redis
import structlog
from receivers import Reply, SmtpSink, WebhookReceiver
from rq.job import Job
from test_pipeline import FAST, enqueue, make_config, seed_items

from monitor.config import Config
from monitor.config_loader import parse_config
from monitor.items import Item
from monitor.keys import Keys
from workers import resources
from workers.alerts import alert_id, raise_alert, raise_alerts
from workers.deadletter import attempts_of, dead_letters
from workers.delivery import deliver as deliver_to_channel
from workers.dispatch import deliver_alert, job_id
from workers.model import Alert
from workers.outbox import GRACE_S, Send, member, send_all, sweep
from workers.worker import run_worker


def hook_config(
    prefix: str, receiver: WebhookReceiver, *, inline: float = 2, timeout: float = 5
) -> Config:
    text = f"""
redis: {{prefix: "{prefix}"}}
workers: {{ner: {{enabled: false}}}}
delivery: {{retry: {FAST}, inline_timeout: {inline}}}
channels:
  ops: {{type: webhook, url: "{receiver.url}", secret: "{receiver.secret}", timeout: {timeout}}}
rules:
  - {{id: r1, query: 'China AND Russia', channels: [ops]}}
"""
    return parse_config(text, "test.yaml", {})


def hooks_config(prefix: str, receiver: WebhookReceiver, channels: list[str]) -> Config:
    """Webhook channels named ``channels``, all to ``receiver`` (each at a path of its
    name: ``/ops``, ``/desk``), and the rule routing to each of them, in that order."""
    hooks = "".join(
        f'  {name}: {{type: webhook, url: "{receiver.url.removesuffix("/hook")}/{name}", '
        f'secret: "{receiver.secret}", timeout: 5}}\n'
        for name in channels
    )
    text = f"""
redis: {{prefix: "{prefix}"}}
workers: {{ner: {{enabled: false}}}}
delivery: {{retry: {FAST}, inline_timeout: 2}}
channels:
{hooks}rules:
  - {{id: r1, query: 'China AND Russia', channels: [{", ".join(channels)}]}}
"""
    return parse_config(text, "test.yaml", {})


def an_alert(config: Config, n: int = 1) -> Alert:
    item = Item(
        key=f"feed#{n}",
        feed_url="https://wire.test/feed.xml",
        feed_name="Wire",
        url=f"https://wire.test/{n}",
        title=f"China and Russia sign accord number {n}",
    )
    rule = config.rules[0]
    return Alert(alert_id(rule.id, f"story-{n}"), rule.id, rule.query, item, story_id=f"story-{n}")


def history_of(client: redis.Redis, keys: Keys) -> list[dict[bytes, bytes]]:
    """The alert history stream's entries, oldest first (fields and values as bytes)."""
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.alert_history()))
    return [fields for _, fields in entries]


def raised(
    client: redis.Redis, prefix: str, receiver: WebhookReceiver, **config_options: float
) -> tuple[Config, resources.Resources, Alert, list[Send]]:
    """One alert raised as a batch raises it, its sends pending and not yet made (a batch
    that "dies" here leaves them to the outbox): config, resources, alert, pending sends."""
    config = hook_config(prefix, receiver, **config_options)
    res = resources.load(config)
    alert = an_alert(config)
    pending: list[Send] = []
    assert raise_alert(client, res, alert, config.rules[0], pending)  # a new alert
    return config, res, alert, pending


def test_the_batch_delivers_itself_and_enqueues_no_delivery_job(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    config = make_config(prefix, webhook_receiver, smtp_sink, FAST)
    keys = Keys(prefix)
    enqueue(redis_client, config, seed_items())
    run_worker(config, redis_url, burst=True)

    [hook] = webhook_receiver.wait_for(1)
    assert hook.verified
    assert len(smtp_sink.wait_for(1)) == 1
    assert hook.id is not None
    for channel in ("ops", "desk", "console"):
        assert redis_client.exists(keys.delivered(hook.id, channel))
        assert not Job.exists(job_id(keys, hook.id, channel, 1), connection=redis_client)
    assert redis_client.zcard(keys.outbox()) == 0
    events = history_of(redis_client, keys)
    delivered = [e for e in events if e[b"event"] == b"delivered"]
    assert {e[b"channel"] for e in delivered} == {b"ops", b"desk", b"console"}


def test_an_alert_whose_batch_died_before_sending_is_swept_to_a_job(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    # What the batch does before it sends; the worker "dies" right after.
    config, res, alert, pending = raised(redis_client, prefix, webhook_receiver)
    assert pending == [Send(alert, "ops")]

    assert sweep(redis_client, res) == 0  # not abandoned yet: its batch may still send
    run_worker(config, redis_url, burst=True)
    assert webhook_receiver.received == []

    later = time.time() + GRACE_S + 3
    assert sweep(redis_client, res, now=later) == 1
    assert sweep(redis_client, res, now=later) == 0  # leased: another sweep takes none
    run_worker(config, redis_url, burst=True)
    [hook] = webhook_receiver.wait_for(1)
    assert hook.id == alert.id and hook.verified
    assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
    assert redis_client.zcard(res.keys.outbox()) == 0

    # The batch run again (rq retries a dead worker's job): nothing is sent twice.
    again: list[Send] = []
    assert not raise_alert(redis_client, res, alert, config.rules[0], again)
    send_all(redis_client, res, again)
    run_worker(config, redis_url, burst=True)
    time.sleep(0.2)
    assert len(webhook_receiver.received) == 1


def test_a_send_both_inline_and_by_a_swept_job_goes_out_once(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    config, res, alert, pending = raised(redis_client, prefix, webhook_receiver)
    # A slow batch: the sweep hands the send to a job, which delivers it first ...
    assert sweep(redis_client, res, now=time.time() + GRACE_S + 3) == 1
    run_worker(config, redis_url, burst=True)
    webhook_receiver.wait_for(1)
    # ... and the batch, when it gets to its sends, finds it delivered.
    assert send_all(redis_client, res, pending) == {"sent": 0, "handed_on": 0, "skipped": 1}
    assert len(webhook_receiver.received) == 1
    assert redis_client.zscore(res.keys.outbox(), member(alert.id, "ops")) is None


def test_a_failed_inline_send_is_attempt_one_and_retried_by_a_job(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.respond_with(503)  # then 200
    config, res, alert, pending = raised(redis_client, prefix, webhook_receiver)
    assert send_all(redis_client, res, pending)["handed_on"] == 1
    [failed] = attempts_of(redis_client, res.keys, alert.id, "ops")
    assert (failed.attempt, failed.status, failed.transient) == (1, 503, True)
    assert Job.exists(job_id(res.keys, alert.id, "ops", 2), connection=redis_client)
    assert redis_client.zcard(res.keys.outbox()) == 0

    run_worker(config, redis_url, burst=True)
    received = webhook_receiver.wait_for(2)
    assert [r.status for r in received] == [503, 200]
    assert {r.id for r in received} == {alert.id}
    assert redis_client.exists(res.keys.delivered(alert.id, "ops"))


def test_a_slow_inline_send_becomes_attempt_one_with_the_full_timeout(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.respond_with(Reply(200, delay=2))  # then 200 at once
    config = hook_config(prefix, webhook_receiver, inline=0.3, timeout=5)
    res = resources.load(config)
    first, second = an_alert(config, 1), an_alert(config, 2)
    pending: list[Send] = []
    raise_alert(redis_client, res, first, config.rules[0], pending)
    raise_alert(redis_client, res, second, config.rules[0], pending)
    started = time.monotonic()
    counts = send_all(redis_client, res, pending)
    # The first timed out; the second went straight to a job: the batch waited once.
    assert counts == {"sent": 0, "handed_on": 2, "skipped": 0}
    assert time.monotonic() - started < 1.5
    assert attempts_of(redis_client, res.keys, first.id, "ops") == []  # slow is not failed
    for alert in (first, second):
        assert Job.exists(job_id(res.keys, alert.id, "ops", 1), connection=redis_client)

    run_worker(config, redis_url, burst=True)
    webhook_receiver.wait_for(3)
    for alert in (first, second):
        assert redis_client.exists(res.keys.delivered(alert.id, "ops"))


def test_inline_timeout_zero_keeps_one_delivery_job_per_send(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    config, res, alert, pending = raised(redis_client, prefix, webhook_receiver, inline=0)
    assert pending == []
    assert redis_client.zcard(res.keys.outbox()) == 0
    assert Job.exists(job_id(res.keys, alert.id, "ops", 1), connection=redis_client)
    run_worker(config, redis_url, burst=True)
    assert webhook_receiver.wait_for(1)[0].id == alert.id


def test_a_batch_raises_its_alerts_together_and_a_repeated_id_once(
    redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    config = hook_config(prefix, webhook_receiver)
    res = resources.load(config)
    rule = config.rules[0]
    first, second = an_alert(config, 1), an_alert(config, 2)
    pending: list[Send] = []
    created = raise_alerts(
        redis_client, res, [(first, rule), (second, rule), (first, rule)], pending
    )
    assert created == [True, True, False]
    assert pending == [Send(first, "ops"), Send(second, "ops")]
    assert send_all(redis_client, res, pending) == {"sent": 2, "handed_on": 0, "skipped": 0}
    assert {hook.id for hook in webhook_receiver.wait_for(2)} == {first.id, second.id}
    for alert in (first, second):
        assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
        assert not redis_client.exists(res.keys.sending(alert.id, "ops"))  # lock released
    assert redis_client.zcard(res.keys.outbox()) == 0
    # Raised again (a retried batch): nothing new, nothing to send.
    again: list[Send] = []
    assert raise_alerts(redis_client, res, [(first, rule), (second, rule)], again) == [False, False]
    assert again == []


def test_a_send_another_batch_is_making_is_left_to_it(
    redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    """Two items of one story in two batches at once both route the alert: the batch that
    finds the send's lock taken neither sends it nor drops its outbox entry."""
    _, res, alert, pending = raised(redis_client, prefix, webhook_receiver)
    # The other batch claimed the send and is sending it now (the owner an inline send
    # wrote before each batch had its own).
    redis_client.set(res.keys.sending(alert.id, "ops"), f"inline-{alert.id}", ex=30)
    assert send_all(redis_client, res, pending) == {"sent": 0, "handed_on": 0, "skipped": 1}
    time.sleep(0.2)
    assert webhook_receiver.received == []
    assert redis_client.zscore(res.keys.outbox(), member(alert.id, "ops")) is not None


def test_a_send_to_a_channel_a_reload_removed_is_buried_by_its_job_and_the_others_go_out(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    """Routed under the old config, sent under the new one (the worker reloaded between
    the batch's routing and its sends): the send to the channel that is gone cannot be
    made, so it is handed to its delivery job, which makes it a dead letter (nothing
    dropped silently, nor left for the sweep); the batch's other sends go out."""
    before = hooks_config(prefix, webhook_receiver, ["desk", "ops"])
    res = resources.load(before)
    alert = an_alert(before)
    pending: list[Send] = []
    assert raise_alert(redis_client, res, alert, before.rules[0], pending)
    assert pending == [Send(alert, "desk"), Send(alert, "ops")]  # the gone one first

    after = hooks_config(prefix, webhook_receiver, ["ops"])
    reloaded = resources.load(after, previous=res)
    with structlog.testing.capture_logs() as logs:
        counts = send_all(redis_client, reloaded, pending)
    assert counts == {"sent": 1, "handed_on": 1, "skipped": 0}
    [hook] = webhook_receiver.wait_for(1)
    assert (hook.id, hook.path, hook.verified) == (alert.id, "/ops", True)
    assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
    [handed] = [e for e in logs if e["event"] == "alert_handed_to_job"]
    assert (handed["channel"], handed["reason"]) == ("desk", "channel not in the config any more")
    assert Job.exists(job_id(res.keys, alert.id, "desk", 1), connection=redis_client)
    assert redis_client.zcard(res.keys.outbox()) == 0
    assert not redis_client.exists(res.keys.sending(alert.id, "desk"))

    run_worker(after, redis_url, burst=True)
    [letter] = dead_letters(redis_client, res.keys)
    assert (letter.target, letter.channel) == (alert.id, "desk")
    assert "not in the config any more" in letter.reason
    events = history_of(redis_client, res.keys)
    assert [(e[b"event"], e[b"channel"]) for e in events if b"channel" in e] == [
        (b"delivered", b"ops"),
        (b"dead", b"desk"),
    ]
    assert not redis_client.exists(res.keys.delivered(alert.id, "desk"))
    time.sleep(0.2)
    assert len(webhook_receiver.received) == 1  # nothing sent to the gone channel's URL


def test_a_bug_in_an_inline_send_hands_it_to_a_job_and_the_batch_sends_the_rest_once(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception that is no delivery error (a bug in a channel's code) in the first
    send: logged, its lock released, its entry handed to the first attempt's job (rq's
    own retries and dead letter are the net for a bug: no attempt of the channel's
    policy is used up); that channel's later sends go to jobs too, the other channel's
    are made inline, and each alert reaches each channel exactly once."""
    config = hooks_config(prefix, webhook_receiver, ["ops", "desk"])
    res = resources.load(config)
    rule = config.rules[0]
    first, second = an_alert(config, 1), an_alert(config, 2)
    pending: list[Send] = []
    raise_alerts(redis_client, res, [(first, rule), (second, rule)], pending)
    assert pending == [
        Send(first, "ops"),
        Send(first, "desk"),
        Send(second, "ops"),
        Send(second, "desk"),
    ]

    tried: list[tuple[str, str]] = []

    def buggy(alert: Alert, name: str, channel: object, **options: object) -> None:
        tried.append((alert.id, name))
        if (alert.id, name) == (first.id, "ops"):
            raise RuntimeError("a bug in the channel's code")
        deliver_to_channel(alert, name, channel, **options)  # type: ignore[arg-type]

    monkeypatch.setattr("workers.outbox.deliver_to_channel", buggy)
    with structlog.testing.capture_logs() as logs:
        counts = send_all(redis_client, res, pending)
    assert counts == {"sent": 2, "handed_on": 2, "skipped": 0}
    # The second alert's ops send was not tried inline: ops failed in this batch.
    assert tried == [(first.id, "ops"), (first.id, "desk"), (second.id, "desk")]
    [failed] = [e for e in logs if e["event"] == "alert_inline_send_failed"]
    assert (failed["alert_id"], failed["channel"]) == (first.id, "ops")
    for alert in (first, second):
        assert not redis_client.exists(res.keys.sending(alert.id, "ops"))  # lock released
        assert not redis_client.exists(res.keys.sending(alert.id, "desk"))
        assert Job.exists(job_id(res.keys, alert.id, "ops", 1), connection=redis_client)
        assert not Job.exists(job_id(res.keys, alert.id, "desk", 1), connection=redis_client)
        assert attempts_of(redis_client, res.keys, alert.id, "ops") == []
    assert redis_client.zcard(res.keys.outbox()) == 0

    run_worker(config, redis_url, burst=True)  # the jobs send with the real code
    webhook_receiver.wait_for(4)
    time.sleep(0.2)
    received = Counter((hook.id, hook.path) for hook in webhook_receiver.received)
    assert received == {
        (alert.id, f"/{name}"): 1 for alert in (first, second) for name in ("ops", "desk")
    }
    for alert in (first, second):
        for name in ("ops", "desk"):
            assert redis_client.exists(res.keys.delivered(alert.id, name))
    events = history_of(redis_client, res.keys)
    assert len([e for e in events if e[b"event"] == b"delivered"]) == 4
    assert dead_letters(redis_client, res.keys) == []


def test_an_inline_send_whose_bug_persists_in_its_job_ends_as_a_dead_letter(
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job an unexpected error hands the send to hits the same bug: rq runs it again
    (its crash retries), then the on-failure callback buries it. Never lost, never sent."""
    config, res, alert, pending = raised(redis_client, prefix, webhook_receiver)

    def buggy(*args: object, **options: object) -> None:
        raise RuntimeError("a bug in the channel's code")

    monkeypatch.setattr("workers.outbox.deliver_to_channel", buggy)
    monkeypatch.setattr("workers.dispatch.deliver_to_channel", buggy)
    assert send_all(redis_client, res, pending) == {"sent": 0, "handed_on": 1, "skipped": 0}
    run_worker(config, redis_url, burst=True)

    [letter] = dead_letters(redis_client, res.keys)
    assert (letter.target, letter.channel) == (alert.id, "ops")
    assert "RuntimeError: a bug in the channel's code" in letter.reason
    assert not redis_client.exists(res.keys.sending(alert.id, "ops"))
    assert not redis_client.exists(res.keys.delivered(alert.id, "ops"))
    assert redis_client.zcard(res.keys.outbox()) == 0
    assert webhook_receiver.received == []


def slow_batch(
    client: redis.Redis,
    prefix: str,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
) -> tuple[resources.Resources, list[Alert], list[Send]]:
    """``count`` alerts raised in one batch, each send answered after 0.5 s, under an
    inline timeout of 2 s (room for a loaded machine: a send that times out would hand
    the channel's later sends to jobs) and a lock margin of 2 s: the locks claimed
    together last 4 s, and from the second second on, each send renews its lock first."""
    monkeypatch.setattr("workers.outbox.LOCK_MARGIN_S", 2)
    config = hook_config(prefix, receiver, inline=2)
    res = resources.load(config)
    alerts = [an_alert(config, n) for n in range(1, count + 1)]
    pending: list[Send] = []
    raise_alerts(client, res, [(alert, config.rules[0]) for alert in alerts], pending)
    assert pending == [Send(alert, "ops") for alert in alerts]
    receiver.respond_with(*[Reply(200, delay=0.5)] * (count + 1))
    return res, alerts, pending


def test_sends_slower_than_the_lock_margin_write_their_marks_and_renew_the_later_locks(
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch claims all its locks at once: behind slow sends, a later send's lock
    would expire before it is made (and a job or the sweep could send it too). So once
    the sends have taken most of the margin, the batch writes the outcomes so far and
    renews each later lock before its send: each alert goes out once, under its lock."""
    res, alerts, pending = slow_batch(redis_client, prefix, webhook_receiver, monkeypatch, 10)
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(send_all, redis_client, res, pending)
        # The last send is in flight at 4.5 s, past the 4 s of the locks claimed together.
        webhook_receiver.wait_for(10)
        *earlier, last = alerts
        owner = cast(bytes | None, redis_client.get(res.keys.sending(last.id, "ops")))
        assert owner is not None and owner.startswith(b"inline-")  # renewed, still the batch's
        for alert in earlier:  # written before the last send, their locks gone with them
            assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
            assert not redis_client.exists(res.keys.sending(alert.id, "ops"))
        assert redis_client.zrange(res.keys.outbox(), 0, -1) == [member(last.id, "ops").encode()]
        counts = batch.result(timeout=20)

    assert counts == {"sent": 10, "handed_on": 0, "skipped": 0}
    time.sleep(0.2)
    assert Counter(hook.id for hook in webhook_receiver.received) == {a.id: 1 for a in alerts}
    for alert in alerts:
        assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
        assert not redis_client.exists(res.keys.sending(alert.id, "ops"))
    assert redis_client.zcard(res.keys.outbox()) == 0
    events = history_of(redis_client, res.keys)
    assert len([e for e in events if e[b"event"] == b"delivered"]) == 10


def test_a_send_whose_lock_expired_behind_slow_sends_and_went_to_a_job_is_not_sent_again(
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the batch is still busy with slow sends, the locks it claimed for its last
    sends expire, and delivery jobs take them (a sweep that came early): one job has
    delivered its alert, the other is still sending. The batch, renewing each lock
    before its send, finds the first delivered (its entry goes) and the second taken
    (its entry stays, for the job's marks or the sweep): neither is sent twice."""
    res, alerts, pending = slow_batch(redis_client, prefix, webhook_receiver, monkeypatch, 13)
    *made, sending, done = alerts
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(send_all, redis_client, res, pending)
        locks = [res.keys.sending(alert.id, "ops") for alert in (sending, done)]
        give_up = time.monotonic() + 10
        # First the batch claims them (its thread may start late on a busy machine) …
        while redis_client.exists(*locks) < 2 and time.monotonic() < give_up:
            time.sleep(0.005)
        assert redis_client.exists(*locks) == 2
        # … then they expire behind the slow sends.
        while redis_client.exists(*locks) and time.monotonic() < give_up:
            time.sleep(0.02)
        assert not redis_client.exists(*locks)  # expired 4 s in: the batch is at its 9th
        # A job in the middle of its send holds one lock; another job delivers the other.
        assert redis_client.set(locks[0], "a-delivery-job", nx=True, ex=30)
        assert deliver_alert(redis_client, res, done.id, "ops", 1) == "delivered"
        assert not batch.done()  # the batch got to neither yet
        counts = batch.result(timeout=20)

    assert counts == {"sent": 11, "handed_on": 0, "skipped": 2}
    time.sleep(0.2)
    received = Counter(hook.id for hook in webhook_receiver.received)
    assert received == {alert.id: 1 for alert in (*made, done)}  # and none to ``sending``
    for alert in (*made, done):
        assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
        assert not redis_client.exists(res.keys.sending(alert.id, "ops"))
    assert not redis_client.exists(res.keys.delivered(sending.id, "ops"))
    assert redis_client.get(locks[0]) == b"a-delivery-job"
    assert redis_client.zrange(res.keys.outbox(), 0, -1) == [member(sending.id, "ops").encode()]
    events = history_of(redis_client, res.keys)
    assert len([e for e in events if e[b"event"] == b"delivered"]) == 12


def test_two_runs_of_one_delivery_job_at_once_send_once(
    redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    """A job id enqueued twice (two batches routing one alert at the same moment), or rq
    re-running a job it thinks abandoned while it still sends: each run owns the lock on
    its own, so the second finds it taken while the first sends, then the mark."""
    webhook_receiver.respond_with(Reply(200, delay=1.0))
    _, res, alert, _ = raised(redis_client, prefix, webhook_receiver)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(deliver_alert, redis_client, res, alert.id, "ops", 1)
        time.sleep(0.3)  # the first is in its send
        second = pool.submit(deliver_alert, redis_client, res, alert.id, "ops", 1)
        outcomes = sorted([first.result(timeout=10), second.result(timeout=10)])
    assert outcomes == ["delivered", "in progress elsewhere"]
    time.sleep(0.3)
    assert len(webhook_receiver.received) == 1
    # The second run left a re-check; when it runs, the mark stops it.
    assert deliver_alert(redis_client, res, alert.id, "ops", 1) == "already delivered"
    assert len(webhook_receiver.received) == 1


def test_a_send_marked_delivered_just_before_a_job_takes_the_lock_is_not_sent_again(
    redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    """The mark is looked at under the lock, in the same script: an inline send that
    claims, sends, marks and releases between the job's first look and its lock (here the
    mark appears when the job loads the alert record) does not make the job send again."""
    _, res, alert, _ = raised(redis_client, prefix, webhook_receiver)
    delivered = res.keys.delivered(alert.id, "ops")

    class MarkOnLoad(redis.Redis):
        def get(self, name: object) -> object:
            if name == res.keys.alert(alert.id):
                redis_client.set(delivered, "1")  # the inline send finished meanwhile
            return redis_client.get(name)  # type: ignore[arg-type]

    client = MarkOnLoad(connection_pool=redis_client.connection_pool)
    assert deliver_alert(client, res, alert.id, "ops", 1) == "already delivered"
    time.sleep(0.2)
    assert webhook_receiver.received == []


def test_a_delivery_job_whose_mark_fails_once_after_the_send_writes_it_again(
    redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    """Redis drops the connection just after the webhook went out: the job writes its
    delivered mark again (as the outbox does) rather than failing, which would have
    made rq run it again and send a second time."""
    _, res, alert, _ = raised(redis_client, prefix, webhook_receiver)
    failures = [redis.ConnectionError("connection reset")]

    class FlakyPipeline(redis.client.Pipeline):
        def execute(self, raise_on_error: bool = True) -> list[object]:
            if failures and self.command_stack:
                raise failures.pop()
            return super().execute(raise_on_error)

    class Flaky(redis.Redis):
        def pipeline(self, transaction: bool = True, shard_hint: object = None) -> FlakyPipeline:
            return FlakyPipeline(self.connection_pool, self.response_callbacks, transaction, None)

    client = Flaky(connection_pool=redis_client.connection_pool)
    assert deliver_alert(client, res, alert.id, "ops", 1) == "delivered"
    assert failures == []  # the first write did fail
    assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
    assert not redis_client.exists(res.keys.sending(alert.id, "ops"))  # lock released
    assert len(webhook_receiver.wait_for(1)) == 1


def test_a_send_that_outlasts_its_lock_keeps_it_and_the_earlier_sends_locks(
    redis_client: redis.Redis,
    prefix: str,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx's timeouts bound each read, not a request: a receiver that trickles its answer
    (a byte every 0.25 s, under the 1 s timeout) keeps a send going past its lock's TTL.
    The lock of that send, and of the send delivered just before it whose mark waits for
    the batch's end, are renewed while it runs, so no job and no other batch can take
    them and send again."""
    monkeypatch.setattr("workers.outbox.LOCK_MARGIN_S", 2)  # locks of ceil(1) + 2 = 3 s
    webhook_receiver.respond_with(Reply(200), Reply(200, trickle=4.5))  # past the 3 s locks
    config = hook_config(prefix, webhook_receiver, inline=1)
    res = resources.load(config)
    first, second = an_alert(config, 1), an_alert(config, 2)
    pending: list[Send] = []
    raise_alerts(redis_client, res, [(first, config.rules[0]), (second, config.rules[0])], pending)
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(send_all, redis_client, res, pending)
        time.sleep(3.6)
        assert not redis_client.exists(res.keys.delivered(first.id, "ops"))  # mark pending
        for alert in (first, second):
            owner = cast(bytes | None, redis_client.get(res.keys.sending(alert.id, "ops")))
            assert owner is not None and owner.startswith(b"inline-"), alert.id
        assert batch.result(timeout=10) == {"sent": 2, "handed_on": 0, "skipped": 0}
    assert [hook.id for hook in webhook_receiver.received] == [first.id, second.id]
    for alert in (first, second):
        assert redis_client.exists(res.keys.delivered(alert.id, "ops"))
        assert not redis_client.exists(res.keys.sending(alert.id, "ops"))


@pytest.mark.parametrize(("delay", "scheduled"), [(0.0, False), (0.3, False), (0.999, True)])
def test_a_delay_just_under_a_second_is_scheduled_not_run_at_once(
    redis_client: redis.Redis, prefix: str, delay: float, scheduled: bool
) -> None:
    """A 1 s retry delay computed from a clock that moved on comes out as 0.999 s: it
    was enqueued at once, and the retry hit the receiver 5 ms after the failure."""
    from rq import Queue
    from rq.registry import ScheduledJobRegistry
    from rq.serializers import JSONSerializer

    from workers.dispatch import enqueue_on_alerts_queue

    keys = Keys(prefix)
    enqueue_on_alerts_queue(redis_client, keys, "builtins.print", "x", delay_s=delay)
    queue = Queue(keys.alerts_queue, connection=redis_client, serializer=JSONSerializer)
    registry = ScheduledJobRegistry(queue=queue)
    assert (len(registry), len(queue)) == ((1, 0) if scheduled else (0, 1))


def test_a_lock_renewal_that_cannot_reach_redis_is_logged_and_tried_again() -> None:
    """The keeper's thread must not die on a Redis blip: it logs and renews next time."""
    from receivers import free_port
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from workers.outbox import _KEEPER

    unreachable = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    with structlog.testing.capture_logs() as logs, _KEEPER.kept(unreachable, lambda: ["l"], "o", 1):
        time.sleep(1.0)  # renewals every third of a second
    failures = [line for line in logs if line["event"] == "outbox_lock_renewal_failed"]
    assert len(failures) >= 2
