"""The poller's parse processes: feedparser runs there, never on the event loop.

Role: feedparser is pure Python and CPU-bound; one poll parsing a large feed must not
stall the fetches of every other feed. :class:`ParsePool` runs a parse call (a picklable
``functools.partial`` of :func:`monitor.parse.parse_feed` or
:func:`monitor.parse_partial.parse_partial`) in one of ``processes`` one-process
``ProcessPoolExecutor`` s started with "forkserver" (children start from a clean
single-threaded server, not a fork of a process running an event loop and threads).
Each call goes to the process with the fewest calls in hand.

Why one executor per process rather than one executor of N: a parse cut off at its
deadline may be stuck in a pathological body, and the only way to stop it is to kill
its process; killing one executor's only process costs no other feed its parse.

Invariants: a parse process that dies (out of memory on a hostile feed, a signal) costs
that one poll a :class:`~monitor.poll_errors.FeedParseError` and is replaced, so the
other feeds keep being parsed; the children ignore Ctrl-C, which reaches the whole
process group — the poller, not its parser, decides when to stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from monitor.poll_errors import FeedParseError

T = TypeVar("T")  # what the call returns (picklable)


class ParsePool:
    """``processes`` parse processes ("forkserver"), each replaced when it dies."""

    def __init__(self, processes: int = 1) -> None:
        self._executors: list[ProcessPoolExecutor | None] = [
            _new_executor() for _ in range(max(1, processes))
        ]
        self._busy = [0] * len(self._executors)

    async def parse(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        slot = min(range(len(self._busy)), key=self._busy.__getitem__)
        executor = self._executors[slot]
        if executor is None:
            raise FeedParseError("the parse pool is closed")
        self._busy[slot] += 1
        try:
            return await loop.run_in_executor(executor, call)
        except BrokenProcessPool as exc:
            # The parse process died (out of memory on a hostile feed, a signal): start a
            # fresh one so the other feeds keep being parsed.
            self._replace(slot, executor, kill=False)
            raise FeedParseError("the parse process died while parsing this feed") from exc
        except asyncio.CancelledError:
            # The poll was cut off at its deadline (or the poller stops) while the child
            # may be stuck in a pathological parse: every later feed would queue behind
            # it. Kill it and start afresh.
            self._replace(slot, executor, kill=True)
            raise
        finally:
            self._busy[slot] -= 1

    def _replace(self, slot: int, broken: ProcessPoolExecutor, *, kill: bool) -> None:
        if self._executors[slot] is not broken:
            return  # closed, or another poll replaced it already
        self._executors[slot] = _new_executor()
        if kill:
            # ProcessPoolExecutor has no public way to stop a running task.
            for process in list(getattr(broken, "_processes", {}).values()):
                process.kill()
        broken.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        executors = [e for e in self._executors if e is not None]
        self._executors = [None] * len(self._executors)
        for executor in executors:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def _new_executor() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_ignore_interrupts,
    )


def _ignore_interrupts() -> None:
    """A Ctrl-C reaches the whole process group; the poller, not its parser, decides."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
