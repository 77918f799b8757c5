"""The durable per-channel digest buffer, against the session's real Redis."""

from __future__ import annotations

import json
import time

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.config_loader import parse_config
from monitor.keys import Keys
from workers import digest
from workers.digest_flush import sweep
from workers.resources import Resources


def flush_key(keys: Keys, channel: str) -> str:
    return f"{keys.prefix}digest:{channel}:flush"


def taken(
    client: redis.Redis, keys: Keys, channel: str, token: str | None = None, limit: int = 0
) -> digest.Batch:
    """:func:`digest.take` of a flush whose token is current (or that carries none)."""
    batch = digest.take(client, keys, channel, limit=limit, token=token)
    assert batch is not None, "the flush was stale"
    return batch


def desk(prefix: str) -> tuple[Keys, Resources]:
    """Keys and worker resources for a channel ``desk`` with a one-hour digest window
    (the sweep needs neither an extractor nor an HTTP client)."""
    keys = Keys(prefix)
    config = parse_config(
        f'redis: {{prefix: "{prefix}"}}\nchannels: {{desk: {{type: log, digest: 1h}}}}\n',
        "desk.yaml",
        {},
    )
    return keys, Resources(config, keys, None, None)  # type: ignore[arg-type]


def test_add_take_done_round_trip(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 900
    token = digest.add(redis_client, keys, "mail", "a1", flush_at)
    assert token is not None and token.startswith(f"{flush_at!r}:")
    assert digest.add(redis_client, keys, "mail", "a2", flush_at) is None
    assert digest.add(redis_client, keys, "mail", "a3", flush_at) is None
    assert digest.scheduled(redis_client, keys, "mail") == flush_at

    batch = digest.take(redis_client, keys, "mail", token=token)
    assert batch is not None
    assert batch.alert_ids == ("a1", "a2", "a3")  # oldest first
    assert batch.digest_id == digest.digest_id("mail", ["a3", "a1", "a2"])
    digest_id, alert_ids = batch  # unpacks as (digest_id, alert_ids)
    assert len(digest_id) == 32

    assert digest.done(redis_client, keys, "mail", alert_ids, token=token).held == 0
    assert digest.scheduled(redis_client, keys, "mail") is None
    assert digest.take(redis_client, keys, "mail") == digest.Batch("", ())
    assert not redis_client.keys(f"{prefix}*")  # nothing left behind


def test_the_flush_flag_is_set_once_with_a_ttl_past_the_wait(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 300
    claims = [digest.add(redis_client, keys, "ops", f"a{n}", flush_at) for n in range(5)]
    assert [claim is not None for claim in claims] == [True, False, False, False, False]
    ttl = redis_client.ttl(flush_key(keys, "ops"))
    assert 300 < ttl <= 300 + digest.FLAG_GRACE_S + 1
    # Channels are independent.
    assert digest.add(redis_client, keys, "other", "a0", flush_at) is not None


def test_the_same_alert_is_buffered_once(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 60
    assert digest.add(redis_client, keys, "c", "a1", flush_at)
    assert not digest.add(redis_client, keys, "c", "a1", flush_at)
    assert taken(redis_client, keys, "c").alert_ids == ("a1",)
    # Still in flight: a retried alert job does not queue it a second time.
    assert not digest.add(redis_client, keys, "c", "a1", flush_at)
    assert taken(redis_client, keys, "c").alert_ids == ("a1",)
    assert digest.done(redis_client, keys, "c", ["a1"]).held == 0


def test_a_crash_between_take_and_done_returns_the_same_batch(
    redis_client: redis.Redis, redis_url: str, prefix: str
) -> None:
    keys = Keys(prefix)
    for n in range(3):
        digest.add(redis_client, keys, "c", f"a{n}", time.time() + 60)
    first = taken(redis_client, keys, "c")
    # The worker dies here. Another worker, on its own connection, retries the flush.
    other = redis.Redis.from_url(redis_url)
    try:
        digest.add(other, keys, "c", "late", time.time() + 60)  # arrives before the retry
        again = taken(other, keys, "c")
    finally:
        other.close()
    assert again == first
    assert digest.done(redis_client, keys, "c", first.alert_ids).held == 1  # "late" waits
    assert taken(redis_client, keys, "c").alert_ids == ("late",)


def test_alerts_added_during_a_flush_survive_and_ask_for_another(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 60
    token = digest.add(redis_client, keys, "c", "a1", flush_at)
    batch = taken(redis_client, keys, "c", token)
    # The flush is under way: its flag still stands, so a new alert schedules nothing,
    # even one that asks for an earlier flush.
    assert digest.add(redis_client, keys, "c", "a2", flush_at) is None
    assert digest.add(redis_client, keys, "c", "a2b", flush_at - 30) is None
    assert digest.done(redis_client, keys, "c", batch.alert_ids, token=token).held == 2
    assert digest.scheduled(redis_client, keys, "c") is None
    # Exactly one party claims the next flush: the flush job, or a racing add.
    nxt_token = digest.schedule(redis_client, keys, "c", flush_at + 60)
    assert nxt_token is not None
    assert digest.add(redis_client, keys, "c", "a3", flush_at + 60) is None
    assert digest.schedule(redis_client, keys, "c", flush_at + 60) is None
    nxt = taken(redis_client, keys, "c", nxt_token)
    assert nxt.alert_ids == ("a2", "a2b", "a3")
    assert nxt.digest_id != batch.digest_id
    assert digest.done(redis_client, keys, "c", nxt.alert_ids, token=nxt_token).held == 0


def test_a_stale_done_leaves_the_next_flush_alone(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    digest.add(redis_client, keys, "c", "a1", time.time() + 60)
    batch = taken(redis_client, keys, "c")
    assert digest.done(redis_client, keys, "c", batch.alert_ids).held == 0
    assert digest.add(redis_client, keys, "c", "a2", time.time() + 60) is not None
    # A duplicate flush job finishing late reports the same batch done again.
    assert digest.done(redis_client, keys, "c", batch.alert_ids).held == 0
    assert digest.scheduled(redis_client, keys, "c") is not None


def test_an_empty_flush_clears_the_flag(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    redis_client.set(flush_key(keys, "c"), "1", ex=600)  # e.g. a flush left by a crash
    assert digest.take(redis_client, keys, "c") == digest.Batch("", ())
    left = digest.done(redis_client, keys, "c", [])
    assert (left.held, left.not_before) == (0, None) and abs(left.now - time.time()) < 5
    assert digest.add(redis_client, keys, "c", "a1", time.time() + 60) is not None


def test_schedule_needs_something_to_flush(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    assert digest.schedule(redis_client, keys, "c", time.time() + 60) is None
    # A lost flush job: the buffer holds alerts, the flag has expired. A sweep reschedules.
    digest.add(redis_client, keys, "c", "a1", time.time() + 60)
    redis_client.delete(flush_key(keys, "c"))
    assert digest.schedule(redis_client, keys, "c", time.time() + 5) is not None


def test_take_with_a_limit_keeps_the_rest_pending(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    for n in range(5):
        digest.add(redis_client, keys, "c", f"a{n}", time.time() + 60)
    first = taken(redis_client, keys, "c", limit=2)
    assert first.alert_ids == ("a0", "a1")
    assert digest.take(redis_client, keys, "c", limit=3) == first  # in flight: unchanged
    assert digest.done(redis_client, keys, "c", first.alert_ids).held == 3
    assert taken(redis_client, keys, "c", limit=2).alert_ids == ("a2", "a3")


def test_take_leaves_alerts_held_until_their_not_before(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Quiet hours are per rule, the buffer per channel: a held alert stays behind."""
    keys = Keys(prefix)
    now = time.time()
    ends = now + 3600
    digest.add(redis_client, keys, "c", "quiet", ends, not_before=ends)
    token = digest.add(redis_client, keys, "c", "gathered", now + 900)  # moved earlier
    digest.add(redis_client, keys, "c", "ended", now + 900, not_before=now - 1)
    batch = taken(redis_client, keys, "c", token)
    assert batch.alert_ids == ("ended", "gathered")  # earliest not-before first
    assert batch.digest_id == digest.digest_id("c", ["ended", "gathered"])
    left = digest.done(redis_client, keys, "c", batch.alert_ids, token=token)
    assert (left.held, left.not_before) == (1, ends)
    assert left.due_in() == pytest.approx(3600, abs=5)
    # A flush that finds nothing due: an empty batch, and the same answer from done.
    assert taken(redis_client, keys, "c") == digest.Batch("", ())
    assert digest.done(redis_client, keys, "c", [])[:2] == (1, ends)
    # A limit counts only the alerts that are due.
    for n in range(3):
        digest.add(redis_client, keys, "c", f"g{n}", now + 900)
    assert taken(redis_client, keys, "c", limit=5).alert_ids == ("g0", "g1", "g2")


def test_an_earlier_add_moves_the_flag_and_the_later_flush_goes_stale(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    flag = flush_key(keys, "c")
    now = time.time()
    ends = now + 8 * 3600  # quiet hours end in the morning
    late = digest.add(redis_client, keys, "c", "quiet", ends, not_before=ends)
    assert late is not None and digest.scheduled(redis_client, keys, "c") == ends
    # A rate overflow on the same channel wants its digest in a minute, not in 8 hours.
    early = digest.add(redis_client, keys, "c", "over", now + 60)
    assert early is not None and early != late
    assert redis_client.get(flag) == early.encode()
    assert 60 < redis_client.ttl(flag) <= 60 + digest.FLAG_GRACE_S + 1
    assert digest.add(redis_client, keys, "c", "later", now + 120) is None  # not earlier
    # The morning job is stale now: it takes nothing and leaves the flag alone.
    assert digest.take(redis_client, keys, "c", token=late) is None
    assert digest.done(redis_client, keys, "c", [], token=late).held == 3
    assert redis_client.get(flag) == early.encode()
    batch = taken(redis_client, keys, "c", early)
    assert batch.alert_ids == ("over", "later")
    left = digest.done(redis_client, keys, "c", batch.alert_ids, token=early)
    assert (left.held, left.not_before) == (1, ends)
    assert redis_client.get(flag) is None
    # The flusher claims the morning flush again, with a new token; the old job stays stale.
    again = digest.schedule(redis_client, keys, "c", now + left.due_in())
    assert again is not None and again not in (late, early)
    assert digest.take(redis_client, keys, "c", token=late) is None
    assert taken(redis_client, keys, "c", again) == digest.Batch("", ())  # not yet due


def test_a_flush_whose_flag_expired_takes_it_over(redis_client: redis.Redis, prefix: str) -> None:
    """The job queued behind others past the flag's grace: it is the only flush left."""
    keys = Keys(prefix)
    token = digest.add(redis_client, keys, "c", "a1", time.time() + 60)
    assert token is not None
    redis_client.delete(flush_key(keys, "c"))
    batch = taken(redis_client, keys, "c", token)
    assert batch.alert_ids == ("a1",)
    assert redis_client.get(flush_key(keys, "c")) == token.encode()
    # In flight: an alert asking for an earlier flush waits for this one's done.
    assert digest.add(redis_client, keys, "c", "a2", time.time() + 1) is None
    assert digest.done(redis_client, keys, "c", batch.alert_ids, token=token).held == 1
    assert redis_client.get(flush_key(keys, "c")) is None


def test_a_failed_flush_keeps_its_flag_for_the_retry(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    flag = flush_key(keys, "c")
    now = time.time()
    token = digest.add(redis_client, keys, "c", "a1", now + 1)
    assert token is not None
    taken(redis_client, keys, "c", token)  # the send fails; the retry comes in 10 minutes
    assert digest.retain(redis_client, keys, "c", token, now + 600)
    assert 600 < redis_client.ttl(flag) <= 600 + digest.FLAG_GRACE_S + 1
    assert redis_client.get(flag) == token.encode()  # the retry carries the same token
    redis_client.delete(flag)  # expired during a long send: taken back
    assert digest.retain(redis_client, keys, "c", token, now + 600)
    # A quiet-hours flush claimed the flag for later: the retry takes it over (its own
    # done schedules the quiet alert again); one due before the retry keeps it.
    redis_client.set(flag, f"{now + 3600!r}:other")
    assert digest.retain(redis_client, keys, "c", token, now + 600)
    redis_client.set(flag, f"{now + 60!r}:other")
    assert not digest.retain(redis_client, keys, "c", token, now + 600)
    assert taken(redis_client, keys, "c", f"{now + 60!r}:other").alert_ids == ("a1",)


def test_a_flush_queued_by_an_older_version_still_works(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Its flag holds a bare ``flush_at`` and its job no token: it flushes regardless."""
    keys = Keys(prefix)
    flag = flush_key(keys, "c")
    now = time.time()
    redis_client.zadd(keys.digest("c"), {"old": now - 5})
    redis_client.set(flag, repr(now + 600), ex=700)
    assert digest.scheduled(redis_client, keys, "c") == now + 600
    assert digest.add(redis_client, keys, "c", "a1", now + 600) is None
    batch = taken(redis_client, keys, "c")
    assert batch.alert_ids == ("old", "a1")
    assert digest.done(redis_client, keys, "c", batch.alert_ids).held == 0
    assert redis_client.get(flag) is None
    # An old flag is moved earlier like a new one.
    redis_client.set(flag, repr(now + 600), ex=700)
    assert digest.add(redis_client, keys, "c", "a2", now + 60) is not None


def test_a_buffer_whose_flush_was_never_scheduled_is_swept(
    redis_client: redis.Redis, prefix: str
) -> None:
    """A worker died between buffering an alert and enqueueing its flush job."""
    keys, res = desk(prefix)
    assert digest.add(redis_client, keys, "desk", "a1", time.time() + 3600)
    redis_client.delete(f"{keys.digest('desk')}:flush")  # the flag expired, no job ran
    assert sweep(redis_client, res) == 1
    assert digest.scheduled(redis_client, keys, "desk") is not None
    assert sweep(redis_client, res) == 0  # scheduled now: nothing more to do
    queue = Queue(keys.alerts_queue, connection=redis_client, serializer=JSONSerializer)
    assert [job.func_name for job in queue.get_jobs()] == ["workers.jobs.flush_digest"]


def test_a_batch_out_holds_its_flag_so_the_sweep_starts_no_second_flush(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys, res = desk(prefix)
    token = digest.add(redis_client, keys, "desk", "a1", time.time() + 1)
    flag = flush_key(keys, "desk")
    redis_client.expire(flag, 5)  # the job starts late: its flag has 5 s left
    batch = digest.take(redis_client, keys, "desk", token=token)
    assert batch is not None and batch.alert_ids == ("a1",)
    # Held for the job's whole time limit while it sends: a maintenance pass meanwhile
    # sees a flush in progress and schedules none (which would send a1 a second time).
    assert redis_client.ttl(flag) >= digest.FLUSH_JOB_TIMEOUT_S
    assert sweep(redis_client, res) == 0
    assert digest.take(redis_client, keys, "desk", token="other") is None


def test_a_done_whose_ids_another_flush_sent_still_reports_what_is_left(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    first = digest.add(redis_client, keys, "desk", "a1", time.time() + 1)
    batch = digest.take(redis_client, keys, "desk", token=first)
    assert batch is not None
    redis_client.delete(flush_key(keys, "desk"))  # however the flag went, a second flush
    second = digest.schedule(redis_client, keys, "desk", time.time())
    assert second is not None and digest.take(redis_client, keys, "desk", token=second) == batch
    assert digest.add(redis_client, keys, "desk", "a2", time.time() + 3600) is None
    assert digest.done(redis_client, keys, "desk", batch.alert_ids, token=first).held == 1
    # The second flush's done finds its ids gone, yet clears its own flag and reports a2,
    # so its caller schedules a2's flush instead of leaving it to the flag's expiry.
    left = digest.done(redis_client, keys, "desk", batch.alert_ids, token=second)
    assert left.held == 1 and redis_client.get(flush_key(keys, "desk")) is None


def test_the_sweep_never_pulls_a_scheduled_digest_forward(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys, res = desk(prefix)
    at = time.time() + 900
    assert digest.add(redis_client, keys, "desk", "a1", at) is not None
    assert sweep(redis_client, res) == 0
    assert digest.scheduled(redis_client, keys, "desk") == pytest.approx(at)
    # Even when it races an add between its read and its claim: the claim is if-absent.
    assert digest.schedule(redis_client, keys, "desk", time.time(), only_if_absent=True) is None
    assert digest.scheduled(redis_client, keys, "desk") == pytest.approx(at)


def _held_alert(client: redis.Redis, keys: Keys, n: int, channel: str = "desk") -> str:
    """An alert record (as a batch writes it) and the alert held in ``channel``'s buffer."""
    from datetime import UTC, datetime

    from monitor.items import Item
    from workers.model import Alert

    item = Item(key=f"k{n}", feed_url="f", feed_name="Wire", url=f"https://x/{n}", title=f"T{n}")
    alert = Alert(id=f"a{n}", rule_id="r", query="x", item=item, created=datetime.now(UTC))
    client.set(keys.alert(alert.id), json.dumps(alert.to_json()))
    digest.add(client, keys, channel, alert.id, time.time())
    return alert.id


def test_a_flush_that_fails_unexpectedly_becomes_a_dead_letter_and_frees_the_channel(
    redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a DeliveryError (a bug, a library's surprise): the batch goes to the dead
    letters with the error's type, instead of staying taken so that every later flush
    fails on it and the channel's digests stop for good."""
    from workers import digest_flush
    from workers.deadletter import dead_letters

    keys, res = desk(prefix)
    held = _held_alert(redis_client, keys, 1)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise UnicodeEncodeError("ascii", "é", 0, 1, "ordinal not in range(128)")

    monkeypatch.setattr(digest_flush, "deliver_digest", broken)
    assert digest_flush.flush(redis_client, res, "desk", 1) == "dead"
    [letter] = dead_letters(redis_client, keys)
    assert letter.kind == "digest" and letter.alert_ids == (held,)
    assert "UnicodeEncodeError" in letter.reason and "é" not in letter.reason
    # The channel is free: the next alert goes out in the next digest.
    monkeypatch.undo()
    later = _held_alert(redis_client, keys, 2)
    assert digest_flush.flush(redis_client, res, "desk", 1) == "delivered"
    assert redis_client.exists(keys.delivered(later, "desk"))


def test_a_flush_does_not_send_an_alert_already_delivered_on_the_channel(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Held again after it went out (a batch re-run after a crash routed it anew): the
    delivered mark keeps it out of the digest (the channel's own log line says so)."""
    from structlog.testing import capture_logs

    from workers import digest_flush

    keys, res = desk(prefix)
    sent, fresh = _held_alert(redis_client, keys, 1), _held_alert(redis_client, keys, 2)
    redis_client.set(keys.delivered(sent, "desk"), "1")
    with capture_logs() as logs:
        assert digest_flush.flush(redis_client, res, "desk", 1) == "delivered"
    [digest_line] = [line for line in logs if line["event"] == "alert_digest"]
    assert digest_line["alert_ids"] == [fresh]
