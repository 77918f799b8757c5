"""WebSub end to end: a feed advertising a real local hub → subscription, verification of
intent, signed pushes onto the items queue, lease renewal, unsubscription, slower polls."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import structlog
from feedserver import FeedServer, feed_server, rss
from hub import Hub
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from monitor.config import Config, FeedConfig, PollerSettings, RedisSettings, WebSubSettings
from monitor.items import items_from_payload
from monitor.keys import Keys, feed_id
from monitor.parse import FeedRef, parse_feed
from monitor.poller import Poller
from monitor.websub import signature_ok

__all__ = ["feed_server"]

FALLBACK = 900.0


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def websub_rss(hub_url: str, self_url: str, *entries: tuple[str, str]) -> str:
    links = f"<atom:link rel='hub' href='{hub_url}'/><atom:link rel='self' href='{self_url}'/>"
    return (
        rss(*entries)
        .replace(
            "<rss version='2.0'>", "<rss version='2.0' xmlns:atom='http://www.w3.org/2005/Atom'>"
        )
        .replace("<channel>", "<channel>" + links, 1)
    )


def make_config(prefix: str, port: int, *feeds: FeedConfig, lease: int = 3600) -> Config:
    websub = WebSubSettings(
        callback_url=f"http://127.0.0.1:{port}",
        listen=f"127.0.0.1:{port}",
        lease_seconds=lease,
        fallback_interval=FALLBACK,
    )
    poller = PollerSettings(connect_timeout=1, total_timeout=2, interval=60, websub=websub)
    return Config(redis=RedisSettings(prefix=prefix), poller=poller, feeds=list(feeds))


def jobs(redis_client: redis.Redis, prefix: str) -> list[Job]:
    queue = Queue(Keys(prefix).items_queue, connection=redis_client, serializer=JSONSerializer)
    return queue.get_jobs()


def titles(job: Job) -> list[str]:
    return [item.title for item in items_from_payload(job.args[0])]


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def run(config: Config, redis_url: str, body: Callable[[Poller], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with Poller(config, redis_url, rand=lambda: 0.5) as poller:
            return await body(poller)

    return asyncio.run(main())


@pytest.fixture
def wire(feed_server: FeedServer, hub: Hub) -> tuple[FeedConfig, str]:
    """A feed on the feed server that advertises the hub; returns it and its topic."""
    topic = feed_server.url("wire.xml")
    feed_server.set("wire.xml", websub_rss(hub.url, topic, ("a", "Alpha"), ("b", "Beta")))
    return FeedConfig(url=topic, name="Wire"), topic


def test_poll_subscribes_and_signed_push_is_enqueued_once(
    wire: tuple[FeedConfig, str],
    feed_server: FeedServer,
    hub: Hub,
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    feed, topic = wire
    port = free_port()
    config = make_config(prefix, port, feed)
    newer = websub_rss(hub.url, topic, ("c", "Gamma"), ("a", "Alpha"), ("b", "Beta"))

    async def body(poller: Poller) -> None:
        first = await poller.poll_feed(feed)
        assert (first.ok, first.new, first.next_in_s) == (True, 2, 60)
        await until(lambda: bool(hub.subscribers(topic)))
        (request,) = hub.requests_for("subscribe")
        assert request["hub.callback"] == f"http://127.0.0.1:{port}/websub/{feed_id(feed.url)}"
        assert request["hub.topic"] == topic and request["hub.lease_seconds"] == "3600"
        assert len(request["hub.secret"]) == 64
        (verification,) = hub.verifications
        assert (verification.status, verification.echoed) == (200, True)

        with structlog.testing.capture_logs() as logs:
            assert await hub.publish(topic, newer) == [200]
        (received,) = [e for e in logs if e["event"] == "websub_content_received"]
        assert (received["new"], received["jobs"], received["feed"]) == (1, 1, "Wire")

        assert await hub.publish(topic, newer) == [200]  # a repeat: nothing new
        feed_server.set("wire.xml", newer)
        second = await poller.poll_feed(feed)
        assert (second.ok, second.new, second.next_in_s) == (True, 0, FALLBACK)

    run(config, redis_url, body)
    polled, pushed = jobs(redis_client, prefix)
    assert titles(polled) == ["Alpha", "Beta"]
    assert titles(pushed) == ["Gamma"]
    assert pushed.func_name == "workers.jobs.process_batch"
    state = redis_client.hgetall(Keys(prefix).websub(feed_id(feed.url)))
    assert state[b"state"] == b"active" and float(state[b"lease"]) == 3600


@pytest.mark.parametrize("signature", ["wrong", "none"])
def test_push_with_a_bad_signature_is_acknowledged_logged_and_ignored(
    signature: str,
    wire: tuple[FeedConfig, str],
    hub: Hub,
    redis_url: str,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    feed, topic = wire
    config = make_config(prefix, free_port(), feed)
    pushed = websub_rss(hub.url, topic, ("z", "Zeta"))

    async def body(poller: Poller) -> list[dict[str, Any]]:
        await poller.poll_feed(feed)
        await until(lambda: bool(hub.subscribers(topic)))
        with structlog.testing.capture_logs() as logs:
            assert await hub.publish(topic, pushed, signature=signature) == [202]
        return logs

    logs = run(config, redis_url, body)
    (warning,) = [e for e in logs if e["event"] == "websub_signature_invalid"]
    assert warning["signature"] == ("missing" if signature == "none" else "wrong")
    assert warning["log_level"] == "warning"
    assert not any(e["event"] == "websub_content_received" for e in logs)
    (only_the_poll,) = jobs(redis_client, prefix)
    assert "Zeta" not in titles(only_the_poll)


def test_verification_for_a_topic_or_mode_we_did_not_ask_for_is_404(
    wire: tuple[FeedConfig, str], hub: Hub, redis_url: str, prefix: str
) -> None:
    feed, topic = wire
    port = free_port()
    config = make_config(prefix, port, feed)
    callback = f"http://127.0.0.1:{port}/websub/{feed_id(feed.url)}"

    async def body(poller: Poller) -> list[tuple[int, str]]:
        before = [await hub.verify(callback, topic)]  # nothing requested yet
        await poller.poll_feed(feed)
        await until(lambda: bool(hub.subscribers(topic)))
        return [
            *before,
            await hub.verify(callback, "http://127.0.0.1:1/other.xml"),
            await hub.verify(callback, topic, mode="unsubscribe"),  # we did not ask
            await hub.verify(f"http://127.0.0.1:{port}/websub/{feed_id('x')}", topic),
            await hub.verify(callback, topic),  # ours: echoed
        ]

    answers = run(config, redis_url, body)
    assert [status for status, _ in answers] == [404, 404, 404, 404, 200]
    assert hub.subscribers(topic), "a rejected verification cancels nothing"


def test_lease_is_renewed_before_it_expires(
    wire: tuple[FeedConfig, str], hub: Hub, redis_url: str, prefix: str
) -> None:
    feed, topic = wire
    config = make_config(prefix, free_port(), feed, lease=2)

    async def body(poller: Poller) -> None:
        await poller.poll_feed(feed)
        await until(lambda: len(hub.verifications) == 1)
        verified = time.monotonic()
        await until(lambda: len(hub.verifications) == 2, within=4)
        renewed = time.monotonic() - verified
        assert 1.0 < renewed < 2.0, renewed  # at 80 % of the 2 s lease
        assert len(hub.requests_for("subscribe")) == 2
        first, second = hub.requests_for("subscribe")
        assert first["hub.secret"] == second["hub.secret"]  # a renewal keeps the secret
        assert hub.verifications[-1].echoed and hub.subscribers(topic)

    run(config, redis_url, body)


def test_removing_the_feed_unsubscribes(
    wire: tuple[FeedConfig, str], hub: Hub, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    feed, topic = wire
    port = free_port()
    run(make_config(prefix, port, feed), redis_url, _subscribed(feed, hub, topic))

    async def without_the_feed(poller: Poller) -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(poller.run(stop))
        await until(lambda: not hub.subscribers(topic))
        stop.set()
        await running

    run(make_config(prefix, port), redis_url, without_the_feed)
    (unsubscribe,) = hub.requests_for("unsubscribe")
    assert unsubscribe["hub.topic"] == topic
    assert hub.verifications[-1].mode == "unsubscribe" and hub.verifications[-1].echoed
    keys = Keys(prefix)
    assert not redis_client.exists(keys.websub(feed_id(feed.url)))
    assert redis_client.zcard(keys.websub_due()) == 0


def _subscribed(feed: FeedConfig, hub: Hub, topic: str) -> Callable[[Poller], Awaitable[None]]:
    async def body(poller: Poller) -> None:
        await poller.poll_feed(feed)
        await until(lambda: bool(hub.subscribers(topic)))

    return body


@pytest.mark.parametrize("method", ["sha1", "sha256", "sha384", "sha512"])
def test_signature_methods_of_the_spec(method: str) -> None:
    body = b"<rss/>"
    mac = hmac.new(b"s3cret", body, getattr(hashlib, method)).hexdigest()
    assert signature_ok(f"{method}={mac}", body, "s3cret")
    assert not signature_ok(f"{method}={mac}", body + b" ", "s3cret")
    assert not signature_ok(f"{method}={mac}", body, "other")
    assert not signature_ok(f"md5={hashlib.md5(body).hexdigest()}", body, "s3cret")
    assert not signature_ok(None, body, "s3cret")
    assert not signature_ok(f"{method}=", body, "s3cret")


def test_parse_exposes_hub_and_self_links() -> None:
    atom = (
        b"<feed xmlns='http://www.w3.org/2005/Atom'><title>x</title>"
        b"<link rel='hub' href='/hub'/><link rel='self' href='feed.atom'/>"
        b"<entry><id>a</id><title>A</title></entry></feed>"
    )
    ref = FeedRef(url="https://example.org/x/feed.atom")
    parsed = parse_feed(atom, feed=ref, content_type=None, base_url=ref.url)
    assert (parsed.hub_url, parsed.self_url) == (
        "https://example.org/hub",
        "https://example.org/x/feed.atom",
    )
    json_feed = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "j",'
        b' "feed_url": "https://example.org/j.json",'
        b' "hubs": [{"type": "rssCloud", "url": "https://c/"},'
        b' {"type": "WebSub", "url": "https://hub.example/"}],'
        b' "items": [{"id": "1", "title": "One"}]}'
    )
    parsed = parse_feed(json_feed, feed=ref, content_type="application/feed+json", base_url=ref.url)
    assert (parsed.hub_url, parsed.self_url) == (
        "https://hub.example/",
        "https://example.org/j.json",
    )
    plain = parse_feed(rss(("a", "A")).encode(), feed=ref, content_type=None, base_url=ref.url)
    assert (plain.hub_url, plain.self_url) == (None, None)


def test_a_hub_that_refuses_is_logged_and_asked_again_later(
    feed_server: FeedServer, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    url = feed_server.url("wire.xml")
    feed_server.set("wire.xml", websub_rss(feed_server.url("no-hub"), url, ("a", "Alpha")))
    feed = FeedConfig(url=url)
    key = Keys(prefix).websub(feed_id(url))

    async def body(poller: Poller) -> float:
        with structlog.testing.capture_logs() as logs:
            outcome = await poller.poll_feed(feed)
            # The error is saved before the warning is logged: wait for both.
            await until(
                lambda: (
                    bool(redis_client.hget(key, "error"))
                    and any(e["event"] == "websub_request_failed" for e in logs)
                )
            )
        assert outcome.ok and outcome.next_in_s == 60  # not subscribed: polled as usual
        (failed,) = [e for e in logs if e["event"] == "websub_request_failed"]
        assert failed["reason"].startswith("hub answered HTTP 405")
        return time.time()

    now = run(make_config(prefix, free_port(), feed), redis_url, body)
    assert redis_client.hget(key, "state") == b"subscribing"
    due = redis_client.zscore(Keys(prefix).websub_due(), feed_id(url))
    assert due is not None and 250 < due - now <= 300


def test_a_hub_in_http_link_headers_is_subscribed_to(
    feed_server: FeedServer, hub: Hub, redis_url: str, prefix: str
) -> None:
    topic = feed_server.url("linked.xml")
    links = f'<{hub.url}>; rel="hub", <{topic}>; rel="self"'
    # The body names another hub: the Link header wins, as the WebSub spec says.
    body = websub_rss("https://elsewhere.example/hub", topic, ("a", "Alpha"))
    feed_server.set("linked.xml", body, headers={"Link": links})
    feed = FeedConfig(url=topic, name="Linked")
    config = make_config(prefix, free_port(), feed)

    async def check(poller: Poller) -> None:
        outcome = await poller.poll_feed(feed)
        assert outcome.ok
        await until(lambda: bool(hub.subscribers(topic)))
        (request,) = hub.requests_for("subscribe")
        assert request["hub.topic"] == topic

    run(config, redis_url, check)
