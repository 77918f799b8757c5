"""The schedule shared in Redis: atomic claims with leases, sync, pollers side by side."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from feedserver import FeedServer, rss

from monitor.config import Config, FeedConfig, PollerSettings, RedisSettings
from monitor.keys import Keys, feed_id
from monitor.poller import Poller
from monitor.shared_schedule import SharedSchedule

T = TypeVar("T")


def make_config(prefix: str, *feeds: FeedConfig, **poller: float) -> Config:
    fields: dict[str, object] = {"connect_timeout": 1, "total_timeout": 2}
    settings = PollerSettings.model_validate(fields | poller)
    return Config(redis=RedisSettings(prefix=prefix), poller=settings, feeds=list(feeds))


def with_schedule(redis_url: str, prefix: str, body: Callable[[SharedSchedule], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await body(SharedSchedule(client, Keys(prefix)))
        finally:
            await client.aclose()

    return asyncio.run(main())


class CountingServer(FeedServer):
    """A feed server that also records the most requests it served at once, per path."""

    def __init__(self) -> None:
        super().__init__()
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._count_lock:
            self.active[request.path] += 1
            self.peak[request.path] = max(self.peak[request.path], self.active[request.path])
        try:
            return await super()._handle(request)
        finally:
            with self._count_lock:
                self.active[request.path] -= 1


def feeds_of(n: int, base: str = "http://feeds.example/") -> list[FeedConfig]:
    return [FeedConfig(url=f"{base}{i}.xml", interval=60) for i in range(n)]


def test_a_claim_takes_due_feeds_once_and_leases_them(redis_url: str, prefix: str) -> None:
    config = make_config(prefix, *feeds_of(3))

    async def body(schedule: SharedSchedule) -> None:
        await schedule.sync(config, lease=30)
        first = await schedule.claim(2, lease=30)
        second = await schedule.claim(5, lease=30)
        third = await schedule.claim(5, lease=30)
        assert (len(first.claims), len(second.claims), len(third.claims)) == (2, 1, 0)
        claimed = {c.feed_id for c in first.claims + second.claims}
        assert claimed == {feed_id(f.url) for f in config.feeds}
        assert third.next_due == pytest.approx(first.now + 30, abs=1)  # the earliest lease
        claim = first.claims[0]
        assert FeedConfig.model_validate_json(claim.config_json).url in {
            f.url for f in config.feeds
        }
        assert await schedule.complete(claim, 120)
        due = await schedule.due_at(FeedConfig.model_validate_json(claim.config_json).url)
        assert due == pytest.approx(claim.claimed_at + 120, abs=0.01)
        # Completed once: the token is spent, a second completion (a late poller) is refused.
        assert not await schedule.complete(claim, 5)
        assert await schedule.due_at(config.feeds[0].url) is not None

    with_schedule(redis_url, prefix, body)


def test_an_expired_lease_is_claimed_again_and_the_late_poller_cannot_overwrite(
    redis_url: str, prefix: str
) -> None:
    config = make_config(prefix, *feeds_of(1))

    async def body(schedule: SharedSchedule) -> None:
        await schedule.sync(config, lease=0.2)
        (dead,) = (await schedule.claim(1, lease=0.2)).claims
        assert (await schedule.claim(1, lease=0.2)).claims == ()
        await asyncio.sleep(0.3)
        (successor,) = (await schedule.claim(1, lease=30)).claims
        assert successor.feed_id == dead.feed_id
        assert not await schedule.complete(dead, 1)  # its lease was lost: no effect
        assert await schedule.complete(successor, 100)

    with_schedule(redis_url, prefix, body)


def test_sync_adds_removes_and_applies_a_changed_interval(redis_url: str, prefix: str) -> None:
    a, b, c = feeds_of(3)
    before = make_config(prefix, a, b)
    after = make_config(
        prefix,
        b.model_copy(update={"interval": 10}),
        c,
        FeedConfig(url="http://x/off", enabled=False),
    )

    async def body(schedule: SharedSchedule) -> None:
        report = await schedule.sync(before, lease=5)
        assert (report.added, report.removed, report.total) == (2, 0, 2)
        for claim in (await schedule.claim(10, lease=5)).claims:
            assert await schedule.complete(claim, 3600)
        now = await schedule.server_time()
        report = await schedule.sync(after, lease=5)
        assert (report.added, report.removed, report.changed) == (1, 1, 1)
        assert await schedule.due_at(a.url) is None  # removed, with its config
        assert await schedule._client.exists(Keys(prefix).feed_conf(feed_id(a.url))) == 0
        assert await schedule.due_at("http://x/off") is None  # disabled: not scheduled
        due_c = await schedule.due_at(c.url)
        assert due_c is not None and due_c <= now + 1  # new: due now
        due_b = await schedule.due_at(b.url)
        assert due_b is not None and due_b <= now + 11  # 3600 s brought forward to 10 s
        again = await schedule.sync(after, lease=5)
        assert (again.added, again.removed, again.changed) == (0, 0, 0)

    with_schedule(redis_url, prefix, body)


def test_an_older_config_never_removes_a_newer_configs_feeds(redis_url: str, prefix: str) -> None:
    a, b, c = feeds_of(3)
    old = make_config(prefix, a, b)
    new = make_config(prefix, b.model_copy(update={"interval": 10}), c)

    async def body(schedule: SharedSchedule) -> None:
        await schedule.sync(new, lease=5, generation=200.0)  # a poller on the new config
        # A poller still on the old config (a rolling deploy) starts or re-syncs:
        report = await schedule.sync(old, lease=5, generation=100.0)
        assert (report.added, report.removed) == (1, 0)  # it may add what it knows …
        assert await schedule.due_at(c.url) is not None  # … but c stays
        conf = await schedule._client.hget(Keys(prefix).feed_conf(feed_id(b.url)), "start")
        assert float(conf) == 10  # and the newer settings of b stand
        # The newest config decides again, removals included.
        report = await schedule.sync(new, lease=5, generation=200.0)
        assert report.removed == 1 and await schedule.due_at(a.url) is None

    with_schedule(redis_url, prefix, body)


def test_two_pollers_never_fetch_one_feed_at_once_and_share_the_work(
    redis_url: str, prefix: str
) -> None:
    with CountingServer() as server:
        feeds = [
            FeedConfig(
                url=server.set(f"f{i}.xml", rss((f"g{i}", "A")), delay=0.3),
                interval=1,
                max_interval=1,
            )
            for i in range(4)
        ]
        config = make_config(prefix, *feeds, concurrency=2)

        async def main() -> None:
            stop = asyncio.Event()
            pollers = [Poller(config, redis_url, name=n, grace=1) for n in ("p1", "p2")]
            tasks = [asyncio.create_task(p.run(stop)) for p in pollers]
            await asyncio.sleep(4.2)
            stop.set()
            await asyncio.gather(*tasks)

        with structlog.testing.capture_logs() as logs:
            asyncio.run(main())
        hits = [server.hits(f"f{i}.xml") for i in range(4)]
        peaks = [server.peak[f"/f{i}.xml"] for i in range(4)]

    assert peaks == [1, 1, 1, 1], "a feed was fetched by two pollers at once"
    # About once a second each for ~4 s (an interval runs from the start of a poll).
    assert all(3 <= h <= 6 for h in hits), hits
    by_poller = Counter(e["poller"] for e in logs if e["event"] == "feed_polled")
    assert set(by_poller) == {"p1", "p2"}, by_poller


def _takeover_after(
    feed_server: FeedServer, redis_url: str, prefix: str, *, holder_alive: bool
) -> float:
    """Seconds from a claim that is never completed until another poller fetches the feed."""
    feed = FeedConfig(url=feed_server.set("wire.xml", rss(("a", "A"))), interval=1)
    config = make_config(prefix, feed, total_timeout=1, lease_margin=2)  # a 3 s lease

    async def main() -> float:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        schedule = SharedSchedule(client, Keys(prefix))
        await schedule.sync(config, lease=3)
        if holder_alive:  # alive but stuck: only the lease's end frees the feed
            await client.set(Keys(prefix).poller_heartbeat("stuck"), "{}", ex=30)
        assert len((await schedule.claim(1, lease=3, owner="stuck")).claims) == 1
        claimed = time.monotonic()
        await client.aclose()
        stop = asyncio.Event()
        task = asyncio.create_task(Poller(config, redis_url, name="survivor").run(stop))
        while feed_server.hits("wire.xml") == 0 and time.monotonic() - claimed < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        taken = time.monotonic() - claimed
        stop.set()
        await task
        return taken

    taken = asyncio.run(main())
    assert feed_server.hits("wire.xml") >= 1
    return taken


def test_a_stuck_pollers_feed_is_taken_over_when_its_lease_ends(
    feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    taken = _takeover_after(feed_server, redis_url, prefix, holder_alive=True)
    assert 3 - 0.1 <= taken <= 3 + 1 + 0.5  # after the lease, within one interval


def test_a_dead_pollers_feed_is_taken_over_without_waiting_for_the_lease(
    feed_server: FeedServer, redis_url: str, prefix: str
) -> None:
    # The holder has no heartbeat (killed): the survivor's sweep frees its feed at once.
    taken = _takeover_after(feed_server, redis_url, prefix, holder_alive=False)
    assert taken < 2.5


def test_a_claim_carries_the_feeds_state_and_finish_records_it_in_one_step(
    redis_url: str, prefix: str
) -> None:
    config = make_config(prefix, *feeds_of(1))
    keys = Keys(prefix)

    async def body(schedule: SharedSchedule) -> None:
        await schedule.sync(config, lease=30)
        url = config.feeds[0].url
        await schedule._client.hset(keys.feed(url), mapping={"etag": '"v1"', "failures": 2})
        (claim,) = (await schedule.claim(5, lease=30)).claims
        assert claim.state is not None
        assert (claim.state.etag, claim.state.failures) == ('"v1"', 2)
        kept, change = await schedule.finish(
            claim, 120, fields={"etag": '"v2"', "failures": None}, health="failing"
        )
        assert kept and change is not None and change.previous is None
        stored = await schedule._client.hgetall(keys.feed(url))
        waiting = {k: stored.pop(k) for k in ("announce_from", "announce_at")}
        assert stored == {"etag": '"v2"', "health": "failing"}
        assert waiting["announce_from"] == ""  # a change to announce: from no health yet
        assert float(waiting["announce_at"]) == pytest.approx(time.time(), abs=5)
        due = await schedule.due_at(url)
        assert due == pytest.approx(claim.claimed_at + 120, abs=0.01)
        # The lease is gone: the outcome is still recorded, the due time is not touched.
        kept, change = await schedule.finish(claim, 5, fields={"etag": '"v3"'}, health="failing")
        assert (kept, change) == (False, None)
        assert await schedule._client.hget(keys.feed(url), "etag") == '"v3"'
        assert await schedule.due_at(url) == due

    with_schedule(redis_url, prefix, body)


def test_finishes_of_one_loop_turn_share_one_script_run_and_survive_a_script_flush(
    redis_url: str, prefix: str
) -> None:
    config = make_config(prefix, *feeds_of(30))

    async def evalsha_calls(schedule: SharedSchedule) -> int:
        stats = await schedule._client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    async def body(schedule: SharedSchedule) -> None:
        await schedule.sync(config, lease=30)
        (first,) = (await schedule.claim(1, lease=30)).claims
        await schedule.finish(first, 600, fields={}, health="healthy")  # loads the script
        claims = (await schedule.claim(20, lease=30)).claims
        before = await evalsha_calls(schedule)
        results = await asyncio.gather(
            *(
                schedule.finish(c, 600, fields={"n": i}, health="healthy")
                for i, c in enumerate(claims)
            )
        )
        assert await evalsha_calls(schedule) - before == 1  # 20 polls, one run
        assert [kept for kept, _ in results] == [True] * 20
        await schedule._client.script_flush()  # Redis forgets the script: loaded again
        rest = (await schedule.claim(20, lease=30)).claims
        assert len(rest) == 9
        results = await asyncio.gather(
            *(schedule.finish(c, 600, fields={}, health="healthy") for c in rest)
        )
        assert [kept for kept, _ in results] == [True] * 9
        assert (await schedule.claim(30, lease=30)).claims == ()
        for i, claim in enumerate(claims):
            stored = await schedule._client.hget(Keys(prefix).feed_by_id(claim.feed_id), "n")
            assert stored == str(i)

    with_schedule(redis_url, prefix, body)
