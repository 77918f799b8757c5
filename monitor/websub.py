"""WebSub subscriber (https://www.w3.org/TR/websub/): subscriptions, their state and leases.

Role: when ``poller.websub.callback_url`` is set, a feed that advertises a hub
(``rel="hub"``, topic ``rel="self"``; in HTTP ``Link`` headers, which win, or in the
feed itself) gets pushed to us: a poll reports the links
(:meth:`Subscriber.after_poll`), this module asks the hub for a subscription, answers the
hub's verification of intent, renews the lease at 80 % and unsubscribes when the feed is
no longer configured. Receiving the pushed content is :mod:`monitor.websub_server`'s job
(it checks :func:`signature_ok` and hands the body to the poller's own parse → seen →
enqueue path). Polling goes on as a fallback, no more often than
``poller.websub.fallback_interval`` while a subscription is active.

Storage (names in :mod:`monitor.keys`): ``websub:{feed_id}``, a hash per feed —
``feed_url``, ``hub``, ``topic``, ``secret`` (random, per subscription), ``state``,
``lease`` and ``expires`` (as the hub granted), ``error``; and ``websub:due``, a sorted
set: feed id → when its next request to the hub is due.

States::

    poll finds a hub ─► subscribing ──hub verifies "subscribe"──► active ─┐
                           ▲   │  hub says "denied" ─► denied (asked again after a day)
                           │   └─ hub refuses / unreachable: asked again after 5 min
                           └──────────── renewal at 80 % of the lease ────┘
    feed removed, or no hub advertised any more ─► unsubscribing ──hub verifies──► (deleted)

Invariants:

- Every request to a hub is sent by the one loop :meth:`Subscriber.run` (the poll only
  writes Redis): it claims due feeds atomically, so of several pollers exactly one sends
  each request, and any poller's callback server can answer any verification (the state
  is in Redis). The state is written *before* the request, as a hub may verify before it
  answers.
- A request not verified within ``VERIFY_WAIT`` is sent again; an unverified
  unsubscription is forgotten after a day (the hub's lease ends anyway).
- A renewal keeps the secret (content signed meanwhile still verifies); a new hub or
  topic gets a new subscription and a new secret.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis
import structlog

from monitor.config import WebSubSettings
from monitor.keys import Keys, feed_id
from monitor.zset_lease import LEASE_DUE

log = structlog.get_logger()

SUBSCRIBING, ACTIVE, DENIED, UNSUBSCRIBING = "subscribing", "active", "denied", "unsubscribing"
RENEW_AT = 0.8  # of the lease granted
VERIFY_WAIT = 600.0  # a request still unverified after this is sent again
RETRY_DELAY = 300.0  # after a hub refused a request or could not be reached
DENIED_RETRY = 86400.0
UNSUBSCRIBE_KEEP = 86400  # seconds an unverified unsubscription is remembered
TICK = 1.0  # the request loop looks for due requests at least this often
CLAIM_LIMIT = 50
# Signature methods of WebSub §8 (X-Hub-Signature: method=hex).
_METHODS = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


@dataclass(frozen=True, slots=True)
class Subscription:
    """One feed's subscription as stored in ``websub:{feed_id}``."""

    feed_url: str
    hub: str
    topic: str
    secret: str
    state: str
    lease: float | None = None
    expires: float | None = None
    error: str | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Subscription | None:
        data = {str(name): str(value) for name, value in raw.items()}
        if not all(data.get(name) for name in ("feed_url", "hub", "topic", "secret", "state")):
            return None
        return cls(
            feed_url=data["feed_url"],
            hub=data["hub"],
            topic=data["topic"],
            secret=data["secret"],
            state=data["state"],
            lease=_float(data.get("lease")),
            expires=_float(data.get("expires")),
            error=data.get("error") or None,
        )

    @property
    def accepts_content(self) -> bool:
        """Pushed content is taken while subscribing (a hub may push before it verifies)
        and while active; otherwise we answer 410 Gone, which ends the hub's delivery."""
        return self.state in (SUBSCRIBING, ACTIVE)

    def is_active(self, now: float) -> bool:
        return self.state == ACTIVE and self.expires is not None and self.expires > now


def signature_ok(header: str | None, body: bytes, secret: str) -> bool:
    """``X-Hub-Signature: <method>=<hex HMAC of body>`` with a WebSub method, checked in
    constant time. A missing header, an unknown method or a wrong MAC is ``False``."""
    method, _, given = (header or "").strip().partition("=")
    algorithm = _METHODS.get(method.strip().lower())
    if algorithm is None or not given:
        return False
    expected = hmac.new(secret.encode("utf-8"), body, algorithm).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


def renewal_due(now: float, lease: float) -> float:
    return now + lease * RENEW_AT


def fallback_delay(sub: Subscription | None, delay: float, fallback: float, now: float) -> float:
    """The next poll's delay: no sooner than ``fallback`` while pushed to."""
    return max(delay, fallback) if sub is not None and sub.is_active(now) else delay


class Subscriber:
    """The subscriber side of WebSub over one Redis client and one HTTP session (both
    owned by the poller). See the module docstring."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        session: aiohttp.ClientSession,
        settings: WebSubSettings,
        *,
        timeout: float = 30.0,
    ) -> None:
        if not settings.callback_url:
            raise ValueError("WebSub needs poller.websub.callback_url")
        self.settings = settings
        self._client = client
        self._keys = keys
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._claim = client.register_script(LEASE_DUE)  # args: now, limit, lease
        self._wake = asyncio.Event()

    def callback_for(self, fid: str) -> str:
        return f"{self.settings.callback_url}/websub/{fid}"

    async def subscription(self, fid: str) -> Subscription | None:
        return Subscription.from_hash(await self._client.hgetall(self._keys.websub(fid)))

    # -- the poll's side ------------------------------------------------------------------

    async def after_poll(
        self,
        feed_url: str,
        links: tuple[str | None, str | None] | None,
        fetched_url: str,
        delay: float,
    ) -> float:
        """Note the ``(hub, self)`` links of a freshly parsed body (``None``: the body
        was not parsed, nothing learned); return the next poll's delay."""
        if links is not None:
            hub, topic = links
            await self.discovered(feed_url, hub, topic or fetched_url)
        sub = await self.subscription(feed_id(feed_url))
        return fallback_delay(sub, delay, self.settings.fallback_interval, time.time())

    async def discovered(self, feed_url: str, hub: str | None, topic: str) -> None:
        """A poll saw ``hub`` (or none) for the feed: subscribe, keep, or unsubscribe."""
        fid = feed_id(feed_url)
        sub = await self.subscription(fid)
        if sub is not None and sub.state == UNSUBSCRIBING:
            sub = None  # configured again: start afresh
        if hub is None:
            if sub is not None:
                log.info("websub_hub_gone", feed_url=feed_url, hub=sub.hub)
                await self._unsubscribe(fid, sub)
            return
        if sub is not None and (sub.hub, sub.topic) == (hub, topic):
            return  # requested, active or retrying: the request loop looks after it
        secret = secrets.token_hex(self.settings.secret_bytes)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.websub(fid))
            pipe.hset(
                self._keys.websub(fid),
                mapping={
                    "feed_url": feed_url,
                    "hub": hub,
                    "topic": topic,
                    "secret": secret,
                    "state": SUBSCRIBING,
                },
            )
            pipe.zadd(self._keys.websub_due(), {fid: time.time()})
            await pipe.execute()
        log.info("websub_hub_discovered", feed_url=feed_url, hub=hub, topic=topic)
        self._wake.set()

    async def drop_unconfigured(self, feed_urls: Collection[str]) -> int:
        """Unsubscribe every feed not in ``feed_urls``; returns how many."""
        wanted = {feed_id(url) for url in feed_urls}
        dropped = 0
        for member in await self._client.zrange(self._keys.websub_due(), 0, -1):
            fid = str(member)
            if fid in wanted:
                continue
            sub = await self.subscription(fid)
            if sub is not None and sub.state != UNSUBSCRIBING:
                log.info("websub_feed_removed", feed_url=sub.feed_url, hub=sub.hub)
                await self._unsubscribe(fid, sub)
                dropped += 1
        return dropped

    async def _unsubscribe(self, fid: str, sub: Subscription) -> None:
        key = self._keys.websub(fid)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": UNSUBSCRIBING, "error": ""})
            pipe.expire(key, UNSUBSCRIBE_KEEP)
            pipe.zadd(self._keys.websub_due(), {fid: time.time()})
            await pipe.execute()
        self._wake.set()

    # -- the hub's verification of intent ---------------------------------------------------

    async def verify(self, fid: str, params: Mapping[str, str]) -> str | None:
        """What to answer a verification GET: the challenge (200), ``""`` for a denial
        we noted (200), or ``None`` for 404 — a topic or mode we did not ask for."""
        mode, topic = params.get("hub.mode"), params.get("hub.topic")
        challenge = params.get("hub.challenge") or ""
        sub = await self.subscription(fid)
        now = time.time()
        key, due = self._keys.websub(fid), self._keys.websub_due()
        if sub is None or topic != sub.topic:
            log.warning("websub_verification_rejected", feed_id=fid, mode=mode, topic=topic)
            return None
        if mode == "subscribe" and challenge and sub.state in (SUBSCRIBING, ACTIVE):
            lease = _float(params.get("hub.lease_seconds")) or float(self.settings.lease_seconds)
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    key,
                    mapping={"state": ACTIVE, "lease": lease, "expires": now + lease, "error": ""},
                )
                pipe.zadd(due, {fid: renewal_due(now, lease)})
                await pipe.execute()
            log.info("websub_subscribed", feed_url=sub.feed_url, hub=sub.hub, lease_s=lease)
            return challenge
        if mode == "unsubscribe" and challenge and sub.state == UNSUBSCRIBING:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.zrem(due, fid)
                await pipe.execute()
            log.info("websub_unsubscribed", feed_url=sub.feed_url, hub=sub.hub)
            return challenge
        if mode == "denied":
            reason = params.get("hub.reason") or "no reason given"
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"state": DENIED, "error": f"denied: {reason}"})
                pipe.zadd(due, {fid: now + DENIED_RETRY})
                await pipe.execute()
            log.warning("websub_denied", feed_url=sub.feed_url, hub=sub.hub, reason=reason)
            return ""
        log.warning("websub_verification_rejected", feed_id=fid, mode=mode, state=sub.state)
        return None

    # -- requests to hubs ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send due requests (subscribe, renew, retry, unsubscribe) until ``stop``."""
        while not stop.is_set():
            self._wake.clear()
            timeout = TICK
            try:
                await self.send_due()
                first = await self._client.zrange(self._keys.websub_due(), 0, 0, withscores=True)
                if first:  # a short lease must not wait for the next tick
                    timeout = min(TICK, max(0.01, float(first[0][1]) - time.time()))
            except redis.RedisError as exc:
                log.warning("websub_requests_failed", reason=str(exc))
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def send_due(self) -> int:
        """Claim the due requests (atomically: one poller sends each) and send them."""
        claimed: Sequence[str] = await self._claim(
            keys=[self._keys.websub_due()], args=[time.time(), CLAIM_LIMIT, VERIFY_WAIT]
        )
        await asyncio.gather(*(self._send(fid) for fid in claimed))
        return len(claimed)

    async def _send(self, fid: str) -> None:
        key = self._keys.websub(fid)
        sub = await self.subscription(fid)
        if sub is None:
            await self._client.zrem(self._keys.websub_due(), fid)  # forgotten meanwhile
            return
        mode = "unsubscribe" if sub.state == UNSUBSCRIBING else "subscribe"
        form = {"hub.mode": mode, "hub.topic": sub.topic, "hub.callback": self.callback_for(fid)}
        if mode == "subscribe":
            form |= {
                "hub.lease_seconds": str(self.settings.lease_seconds),
                "hub.secret": sub.secret,
            }
            if sub.state == DENIED:
                await self._client.hset(key, "state", SUBSCRIBING)
        renewal = sub.state == ACTIVE
        error = await self._post(sub.hub, form)
        if error is None:
            log.info(
                "websub_requested", feed_url=sub.feed_url, hub=sub.hub, mode=mode, renewal=renewal
            )
            return
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(key, "error", error)
            pipe.zadd(self._keys.websub_due(), {fid: time.time() + RETRY_DELAY}, xx=True)
            await pipe.execute()
        log.warning(
            "websub_request_failed",
            feed_url=sub.feed_url,
            hub=sub.hub,
            mode=mode,
            reason=error,
            retry_in_s=RETRY_DELAY,
        )

    async def _post(self, hub: str, form: Mapping[str, str]) -> str | None:
        """POST a request to a hub; ``None`` when accepted (2xx), else why not."""
        try:
            async with self._session.post(hub, data=dict(form), timeout=self._timeout) as resp:
                if 200 <= resp.status < 300:
                    return None
                text = (await resp.content.read(300)).decode("utf-8", "replace").strip()
                return f"hub answered HTTP {resp.status}" + (f": {text}" if text else "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"hub unreachable: {type(exc).__name__}: {exc}"


def _float(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None
