"""The durable per-channel digest buffer, against the session's real Redis."""

from __future__ import annotations

import time

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.keys import Keys
from workers import digest


def flush_key(keys: Keys, channel: str) -> str:
    return f"{keys.prefix}digest:{channel}:flush"


def test_add_take_done_round_trip(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 900
    assert digest.add(redis_client, keys, "mail", "a1", flush_at) is True
    assert digest.add(redis_client, keys, "mail", "a2", flush_at) is False
    assert digest.add(redis_client, keys, "mail", "a3", flush_at) is False
    assert digest.scheduled(redis_client, keys, "mail") == flush_at

    batch = digest.take(redis_client, keys, "mail")
    assert batch.alert_ids == ("a1", "a2", "a3")  # oldest first
    assert batch.digest_id == digest.digest_id("mail", ["a3", "a1", "a2"])
    digest_id, alert_ids = batch  # unpacks as (digest_id, alert_ids)
    assert len(digest_id) == 32

    assert digest.done(redis_client, keys, "mail", alert_ids) is False
    assert digest.scheduled(redis_client, keys, "mail") is None
    assert digest.take(redis_client, keys, "mail") == digest.Batch("", ())
    assert not redis_client.keys(f"{prefix}*")  # nothing left behind


def test_the_flush_flag_is_set_once_with_a_ttl_past_the_wait(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 300
    claims = [digest.add(redis_client, keys, "ops", f"a{n}", flush_at) for n in range(5)]
    assert claims == [True, False, False, False, False]
    ttl = redis_client.ttl(flush_key(keys, "ops"))
    assert 300 < ttl <= 300 + digest.FLAG_GRACE_S + 1
    # Channels are independent.
    assert digest.add(redis_client, keys, "other", "a0", flush_at) is True


def test_the_same_alert_is_buffered_once(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 60
    assert digest.add(redis_client, keys, "c", "a1", flush_at)
    assert not digest.add(redis_client, keys, "c", "a1", flush_at)
    assert digest.take(redis_client, keys, "c").alert_ids == ("a1",)
    # Still in flight: a retried alert job does not queue it a second time.
    assert not digest.add(redis_client, keys, "c", "a1", flush_at)
    assert digest.take(redis_client, keys, "c").alert_ids == ("a1",)
    assert digest.done(redis_client, keys, "c", ["a1"]) is False


def test_a_crash_between_take_and_done_returns_the_same_batch(
    redis_client: redis.Redis, redis_url: str, prefix: str
) -> None:
    keys = Keys(prefix)
    for n in range(3):
        digest.add(redis_client, keys, "c", f"a{n}", time.time() + 60)
    first = digest.take(redis_client, keys, "c")
    # The worker dies here. Another worker, on its own connection, retries the flush.
    other = redis.Redis.from_url(redis_url)
    try:
        digest.add(other, keys, "c", "late", time.time() + 60)  # arrives before the retry
        again = digest.take(other, keys, "c")
    finally:
        other.close()
    assert again == first
    assert digest.done(redis_client, keys, "c", again.alert_ids) is True  # "late" waits
    assert digest.take(redis_client, keys, "c").alert_ids == ("late",)


def test_alerts_added_during_a_flush_survive_and_ask_for_another(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    flush_at = time.time() + 60
    assert digest.add(redis_client, keys, "c", "a1", flush_at)
    batch = digest.take(redis_client, keys, "c")
    # The flush is under way: its flag still stands, so a new alert schedules nothing.
    assert digest.add(redis_client, keys, "c", "a2", flush_at) is False
    assert digest.done(redis_client, keys, "c", batch.alert_ids) is True
    assert digest.scheduled(redis_client, keys, "c") is None
    # Exactly one party claims the next flush: the flush job, or a racing add.
    assert digest.schedule(redis_client, keys, "c", time.time() + 60) is True
    assert digest.add(redis_client, keys, "c", "a3", flush_at) is False
    assert digest.schedule(redis_client, keys, "c", time.time() + 60) is False
    nxt = digest.take(redis_client, keys, "c")
    assert nxt.alert_ids == ("a2", "a3")
    assert nxt.digest_id != batch.digest_id
    assert digest.done(redis_client, keys, "c", nxt.alert_ids) is False


def test_a_stale_done_leaves_the_next_flush_alone(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    digest.add(redis_client, keys, "c", "a1", time.time() + 60)
    batch = digest.take(redis_client, keys, "c")
    assert digest.done(redis_client, keys, "c", batch.alert_ids) is False
    assert digest.add(redis_client, keys, "c", "a2", time.time() + 60) is True
    # A duplicate flush job finishing late reports the same batch done again.
    assert digest.done(redis_client, keys, "c", batch.alert_ids) is False
    assert digest.scheduled(redis_client, keys, "c") is not None


def test_an_empty_flush_clears_the_flag(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    redis_client.set(flush_key(keys, "c"), "1", ex=600)  # e.g. a flush left by a crash
    assert digest.take(redis_client, keys, "c") == digest.Batch("", ())
    assert digest.done(redis_client, keys, "c", []) is False
    assert digest.add(redis_client, keys, "c", "a1", time.time() + 60) is True


def test_schedule_needs_something_to_flush(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    assert digest.schedule(redis_client, keys, "c", time.time() + 60) is False
    # A lost flush job: the buffer holds alerts, the flag has expired. A sweep reschedules.
    digest.add(redis_client, keys, "c", "a1", time.time() + 60)
    redis_client.delete(flush_key(keys, "c"))
    assert digest.schedule(redis_client, keys, "c", time.time() + 5) is True


def test_take_with_a_limit_keeps_the_rest_pending(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    for n in range(5):
        digest.add(redis_client, keys, "c", f"a{n}", time.time() + 60)
    first = digest.take(redis_client, keys, "c", limit=2)
    assert first.alert_ids == ("a0", "a1")
    assert digest.take(redis_client, keys, "c", limit=3) == first  # in flight: unchanged
    assert digest.done(redis_client, keys, "c", first.alert_ids) is True
    assert digest.take(redis_client, keys, "c", limit=2).alert_ids == ("a2", "a3")


def test_a_buffer_whose_flush_was_never_scheduled_is_swept(
    redis_client: redis.Redis, prefix: str
) -> None:
    """A worker died between buffering an alert and enqueueing its flush job."""
    from monitor.config_loader import parse_config
    from workers.digest_flush import sweep
    from workers.resources import Resources

    keys = Keys(prefix)
    config = parse_config(
        f'redis: {{prefix: "{prefix}"}}\nchannels: {{desk: {{type: log, digest: 1h}}}}\n',
        "sweep.yaml",
        {},
    )
    res = Resources(config, keys, None, None)  # type: ignore[arg-type]  # sweep needs neither
    assert digest.add(redis_client, keys, "desk", "a1", time.time() + 3600)
    redis_client.delete(f"{keys.digest('desk')}:flush")  # the flag expired, no job ran
    assert sweep(redis_client, res) == 1
    assert digest.scheduled(redis_client, keys, "desk") is not None
    assert sweep(redis_client, res) == 0  # scheduled now: nothing more to do
    queue = Queue(keys.alerts_queue, connection=redis_client, serializer=JSONSerializer)
    assert [job.func_name for job in queue.get_jobs()] == ["workers.jobs.flush_digest"]
