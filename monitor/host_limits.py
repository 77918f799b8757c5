"""Per-host concurrency: at most N fetches at once from any one host.

Role: politeness towards publishers, and fairness between them. Many configured feeds
often live on one host (a newspaper's dozens of section feeds); without a per-host limit
a poller with a large global concurrency opens dozens of connections to that one server
at the top of every interval, which gets it rate-limited or banned.

Inputs: a feed URL. Output: an async context manager that holds one of the host's
``per_host`` slots while the body of the ``async with`` runs::

    limiter = HostLimiter(settings.per_host_concurrency)
    async with limiter.slot(feed.url), global_slots:
        result = await fetch(session, feed.url, ...)

Take the host slot *before* the global one, so a feed waiting for its busy host does not
sit on a global slot that a feed of another host could use; and take both before the
fetch starts, because aiohttp's timeouts also count time spent waiting.

Invariants:

- the host is the URL's lower-cased host name plus its port when it is not the default
  (``Example.com`` and ``example.com:443`` over https are one host); a redirect to
  another host still counts against the host of the URL asked for;
- ``file:`` URLs (and anything without a host) are never limited;
- memory stays bounded by the hosts *in use*: a host's semaphore is dropped as soon as
  its last holder or waiter leaves, so ten thousand feeds on ten thousand hosts leave no
  residue;
- one limiter belongs to one event loop (the poller's); it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=16384)  # called on every poll, with the same few URLs
def host_key(url: str) -> str | None:
    """The key ``url`` is limited under, or ``None`` when it is not limited."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme == "file" or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        return f"{host}:{port}"
    return host


@dataclass
class _Host:
    semaphore: asyncio.Semaphore
    users: int = 0  # holders plus waiters
    held: int = 0


class HostLimiter:
    """At most ``per_host`` concurrent :meth:`slot` holders per host."""

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._hosts: dict[str, _Host] = {}

    def slot(self, url: str) -> _Slot:
        """Hold one of the slots of ``url``'s host (no slot at all for ``file:``)."""
        return _Slot(self, host_key(url))

    def in_use(self, url: str) -> int:
        """Slots of ``url``'s host held right now (for tests and metrics)."""
        key = host_key(url)
        host = self._hosts.get(key) if key is not None else None
        return 0 if host is None else host.held

    @property
    def hosts(self) -> int:
        """Hosts with at least one holder or waiter."""
        return len(self._hosts)


class _Slot:
    """The context manager :meth:`HostLimiter.slot` returns (a class, not a generator:
    it is entered on every poll, and this costs a third of an ``asynccontextmanager``)."""

    __slots__ = ("_host", "_key", "_limiter")

    def __init__(self, limiter: HostLimiter, key: str | None) -> None:
        self._limiter = limiter
        self._key = key
        self._host: _Host | None = None

    async def __aenter__(self) -> None:
        key = self._key
        if key is None:
            return
        hosts = self._limiter._hosts
        host = hosts.get(key)
        if host is None:
            host = hosts[key] = _Host(asyncio.Semaphore(self._limiter.per_host))
        host.users += 1
        try:
            await host.semaphore.acquire()
        except BaseException:
            self._leave(host)
            raise
        host.held += 1
        self._host = host

    async def __aexit__(self, *exc_info: object) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.held -= 1
            host.semaphore.release()
            self._leave(host)

    def _leave(self, host: _Host) -> None:
        host.users -= 1
        if host.users == 0 and self._key is not None:
            del self._limiter._hosts[self._key]
