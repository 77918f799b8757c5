"""The per-rule sliding-window rate limit, against the session's real Redis."""

from __future__ import annotations

import threading

import redis

from monitor.config_types import Rate, parse_rate
from monitor.keys import Keys
from workers.ratelimit import over_rate, rate_key

TEN_PER_HOUR = parse_rate("10/h")
T0 = 1_700_000_000.0


def test_ten_per_hour_admits_ten_then_reports_over(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    admitted = [
        over_rate(redis_client, keys, "r1", TEN_PER_HOUR, f"a{n}", T0 + n) for n in range(10)
    ]
    assert admitted == [False] * 10
    assert over_rate(redis_client, keys, "r1", TEN_PER_HOUR, "a10", T0 + 10) is True
    assert over_rate(redis_client, keys, "r1", TEN_PER_HOUR, "a11", T0 + 11) is True
    # Refused alerts are not recorded: the window holds the ten admitted ones only.
    assert redis_client.zcard(rate_key(keys, "r1")) == 10
    # Other rules have their own window.
    assert over_rate(redis_client, keys, "r2", TEN_PER_HOUR, "a10", T0 + 10) is False


def test_old_entries_leave_the_window(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    rate = Rate(count=2, window_s=60)
    assert not over_rate(redis_client, keys, "r", rate, "a", T0)
    assert not over_rate(redis_client, keys, "r", rate, "b", T0 + 30)
    assert over_rate(redis_client, keys, "r", rate, "c", T0 + 59)
    # At T0 + 60, "a" is exactly one window old and no longer counts.
    assert not over_rate(redis_client, keys, "r", rate, "c", T0 + 60)
    assert over_rate(redis_client, keys, "r", rate, "d", T0 + 89)
    assert not over_rate(redis_client, keys, "r", rate, "d", T0 + 90.5)


def test_the_same_alert_counts_once(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    rate = Rate(count=2, window_s=3600)
    assert not over_rate(redis_client, keys, "r", rate, "a", T0)
    assert not over_rate(redis_client, keys, "r", rate, "a", T0 + 1)  # a retry, or 2nd channel
    assert not over_rate(redis_client, keys, "r", rate, "b", T0 + 2)
    assert not over_rate(redis_client, keys, "r", rate, "a", T0 + 3)  # admitted: never over
    assert over_rate(redis_client, keys, "r", rate, "c", T0 + 4)
    assert redis_client.zcard(rate_key(keys, "r")) == 2


def test_the_key_expires_one_window_after_the_last_admission(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    over_rate(redis_client, keys, "r", Rate(count=5, window_s=90), "a", T0)
    ttl = redis_client.pttl(rate_key(keys, "r"))
    assert 89_000 < ttl <= 90_000


def test_concurrent_callers_never_exceed_the_limit(
    redis_client: redis.Redis, redis_url: str, prefix: str
) -> None:
    keys = Keys(prefix)
    rate = Rate(count=7, window_s=3600)
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        client = redis.Redis.from_url(
            redis_url
        )  # one connection per thread, like separate rq workers
        try:
            barrier.wait()
            for n in range(25):
                outcome = over_rate(client, keys, "r", rate, f"w{index}-{n}", T0 + n)
                with lock:
                    results.append(outcome)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 200
    assert results.count(False) == 7
    assert redis_client.zcard(rate_key(keys, "r")) == 7
