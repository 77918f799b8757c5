"""Coalesce calls of one Lua script into one run of it: one round trip for many callers.

Role: at thousands of polls a second, redis-py's per-command overhead (packing each
argument in Python, a socket write, a read, a Lua call in Redis) costs more CPU than the
work Redis does. Every poll ends with the same script
(:meth:`monitor.shared_schedule.SharedSchedule.finish`), so :class:`ScriptBatcher`
collects those calls and runs the script *once* for all of them: the script loops over
its calls itself. Each call brings one key and one argument (its payload, e.g. a JSON
array, so packing costs one argument per call, not twenty).

Protocol: :meth:`ScriptBatcher.call` queues ``(key, payload)`` and waits for its own
replies. One run is in flight at a time: the calls made meanwhile wait for it to return
and then go together in the next run (no timer: the batch grows with the load, and a
lone call waits for no one). A run is ``EVALSHA`` through redis-py's ``Script``, which
loads the script again when Redis no longer knows it (after a restart or
``SCRIPT FLUSH``). The script gets ``KEYS = shared keys + one key per call`` and
``ARGV = one payload per call`` and returns ``width`` values per call, in order.

Invariants: each call gets exactly its own replies or exception; calls are independent
(the script runs atomically as a whole, but a caller relies only on its own call being
atomic); at most :data:`MAX_BATCH` calls per run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript

MAX_BATCH = 256
_Call = tuple[str, str, "asyncio.Future[list[Any]]"]


class ScriptBatcher:
    """Runs ``script`` once for many :meth:`call` s; see the module docstring."""

    def __init__(self, script: AsyncScript, *, shared_keys: Sequence[str], width: int) -> None:
        self._script = script
        self._shared_keys = list(shared_keys)
        self._width = width
        self._queue: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, key: str, payload: str) -> list[Any]:
        """Queue one call; returns its ``width`` replies."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((key, payload, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    replies = await self._script(
                        keys=[*self._shared_keys, *(key for key, _, _ in batch)],
                        args=[payload for _, payload, _ in batch],
                    )
                except BaseException as exc:  # the run failed as a whole
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(_error(exc))
                    if isinstance(exc, asyncio.CancelledError):
                        for _, _, future in self._queue:  # no run will take them now
                            future.set_exception(_error(exc))
                        self._queue = []
                        raise
                    continue
                width = self._width
                for index, (_, _, future) in enumerate(batch):
                    if not future.done():  # else its caller gave up (cancelled)
                        future.set_result(list(replies[index * width : (index + 1) * width]))
        finally:
            self._flusher = None


def _error(exc: BaseException) -> BaseException:
    """What a caller sees when the whole run failed."""
    return exc if isinstance(exc, Exception) else RuntimeError(f"Redis script aborted: {exc!r}")
