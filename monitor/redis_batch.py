"""Coalesce calls of one Lua script into pipelines: one round trip for many callers.

Role: at thousands of polls a second, redis-py's per-command overhead (a connection
from the pool, packing, a socket write, a read) costs more of the poller's CPU than the
work Redis does. Every poll ends with the same script
(:meth:`monitor.shared_schedule.SharedSchedule.finish`), and polls end in bursts — one
event-loop turn often handles several responses — so :class:`ScriptBatcher` collects
the calls made while a pipeline is being prepared and sends them together.

Protocol: :meth:`ScriptBatcher.call` queues ``(keys, args)`` and waits for its own
reply; the first call of a batch schedules a flush for the next loop turn (no timer, so
no added latency beyond that turn). A flush sends every queued call as ``EVALSHA`` in one
non-transactional pipeline and hands each caller its reply or its error. A script Redis
no longer knows (after a restart or ``SCRIPT FLUSH``) is loaded again and the calls that
hit ``NOSCRIPT`` are retried one by one through redis-py's own ``Script``.

Invariants: each call gets exactly its own reply or exception; calls are independent
(a pipeline is not a transaction — each script is atomic by itself, which is all the
callers rely on); at most :data:`MAX_BATCH` calls per pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

MAX_BATCH = 256
_Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Batches calls of ``script`` (registered on ``client``); see the module docstring."""

    def __init__(self, client: aioredis.Redis, script: AsyncScript) -> None:
        self._client = client
        self._script = script
        self._queue: list[_Call] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((keys, args, future))
        if len(self._queue) == 1:
            task = loop.create_task(self._flush())
            self._flushing.add(task)  # a reference, so the task is not collected
            task.add_done_callback(self._flushing.discard)
        return await future

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                replies = await self._send(batch)
            except BaseException as exc:  # the pipeline failed as a whole
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(_error(exc))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (keys, args, future), reply in zip(batch, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    self._retry(keys, args, future)
                elif future.done():
                    continue  # its caller gave up (cancelled)
                elif isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _send(self, batch: list[_Call]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _retry(self, keys: Sequence[Any], args: Sequence[Any], future: asyncio.Future[Any]) -> None:
        """One call through redis-py's Script, which loads the script when Redis lacks it."""

        async def retry() -> None:
            try:
                reply = await self._script(keys=list(keys), args=list(args))
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(reply)

        task = asyncio.get_running_loop().create_task(retry())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)


def _error(exc: BaseException) -> BaseException:
    """What a caller sees when the whole pipeline failed."""
    return exc if isinstance(exc, Exception) else RuntimeError(f"Redis pipeline aborted: {exc!r}")
