"""The poller's parse process: feedparser runs here, never on the event loop.

Role: feedparser is pure Python and CPU-bound; one poll parsing a large feed must not
stall the fetches of every other feed. :class:`ParsePool` runs
:func:`monitor.parse.parse_feed` in a one-process ``ProcessPoolExecutor`` started with
"forkserver" (children start from a clean single-threaded server, not a fork of a process
running an event loop and threads).

Invariants: a parse process that dies (out of memory on a hostile feed, a signal) costs
that one poll a :class:`~monitor.poll_errors.FeedParseError` and is replaced, so the
other feeds keep being parsed; the child ignores Ctrl-C, which reaches the whole process
group — the poller, not its parser, decides when to stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from monitor.parse import ParsedFeed
from monitor.poll_errors import FeedParseError


class ParsePool:
    """A one-process parse pool ("forkserver"), replaced when its process dies."""

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = _new_executor()

    async def parse(self, call: Callable[[], ParsedFeed]) -> ParsedFeed:
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await loop.run_in_executor(executor, call)
        except BrokenProcessPool as exc:
            # The parse process died (out of memory on a hostile feed, a signal): start a
            # fresh one so the other feeds keep being parsed.
            self._replace(executor, kill=False)
            raise FeedParseError("the parse process died while parsing this feed") from exc
        except asyncio.CancelledError:
            # The poll was cut off at its deadline (or the poller stops) while the child
            # may be stuck in a pathological parse: every later feed would queue behind
            # it. Kill it and start afresh.
            self._replace(executor, kill=True)
            raise

    def _replace(self, broken: ProcessPoolExecutor | None, *, kill: bool) -> None:
        if broken is None or self._executor is not broken:
            return  # closed, or another poll replaced it already
        self._executor = _new_executor()
        if kill:
            # ProcessPoolExecutor has no public way to stop a running task.
            for process in list(getattr(broken, "_processes", {}).values()):
                process.kill()
        broken.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def _new_executor() -> ProcessPoolExecutor:
    # "forkserver": children start from a clean single-threaded server, not a fork of a
    # process running an event loop and threads.
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_ignore_interrupts,
    )


def _ignore_interrupts() -> None:
    """A Ctrl-C reaches the whole process group; the poller, not its parser, decides."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
