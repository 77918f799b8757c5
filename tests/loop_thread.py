"""A test server that runs on its own asyncio loop in a background thread.

The local servers of the test suite (feed server, hostile server, WebSub hub) are used
from plain synchronous tests. They share this lifecycle: ``start()`` runs the loop in a
daemon thread and waits for :meth:`LoopThread._serve`; ``stop()`` awaits
:meth:`LoopThread._shutdown` on that loop, stops the loop, joins the thread and closes
the loop, so no socket or thread outlives the test (warnings are errors).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")


class LoopThread:
    thread_name = "test-server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _serve(self) -> None:
        """Start listening (on the server's loop); set the port the tests use."""
        raise NotImplementedError

    async def _shutdown(self) -> None:
        """Close everything :meth:`_serve` opened (on the server's loop)."""

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        self._run(self._serve())
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._run(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
