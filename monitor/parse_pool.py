"""The poller's parse processes: feedparser runs there, never on the event loop.

Role: feedparser is pure Python and CPU-bound; one poll parsing a large feed must not
stall the fetches of every other feed. :class:`ParsePool` runs a parse call (a picklable
``functools.partial`` of :func:`monitor.parse.parse_feed` or
:func:`monitor.parse_partial.parse_partial`) in one of ``processes`` child processes,
started with "forkserver" (children start from a clean single-threaded server, not a
fork of a process running an event loop). Each call goes to the process with the fewest
calls in hand; a process parses one call at a time.

Why not ``concurrent.futures.ProcessPoolExecutor``: it hands every call and result
through two threads of its own (a manager and a queue feeder), and at thousands of
polls a second the event loop then waited for the GIL at each hand-off — about a
millisecond of the poller's time per changed feed (``bench/README.md``, "Third
round"). Here the loop itself writes the pickled call to a socket pair and reads the
pickled answer back (asyncio streams): no thread.

Wire format, both ways: an 8-byte big-endian length, then a pickle. The child answers
``(True, result)`` or ``(False, exception)``; the exception is raised in the poller.

Invariants: a parse process that dies (out of memory on a hostile feed, a signal) costs
the poll in hand a :class:`~monitor.poll_errors.FeedParseError` and is replaced, so the
other feeds keep being parsed; one found dead between calls is replaced before the next
call is sent. A call cut off (the poll's deadline, the poller stopping) kills its
process — it may be stuck in a pathological body, and killing is the only way to stop
it — and the next call starts a fresh one. An answer that cannot be read back (an
exception that pickles but does not unpickle) is a ``FeedParseError`` naming it, and the
process stays. The children ignore Ctrl-C, which reaches the
whole process group: the poller, not its parser, decides when to stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import signal
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from monitor.poll_errors import FeedParseError

T = TypeVar("T")  # what the call returns (picklable)

_HEADER = 8  # bytes of the length that precedes each pickle


class ParsePool:
    """``processes`` parse processes ("forkserver"), each replaced when it dies."""

    def __init__(self, processes: int = 1) -> None:
        self._workers = [_Worker() for _ in range(max(1, processes))]
        self._closed = False

    async def parse(self, call: Callable[[], T]) -> T:
        if self._closed:
            raise FeedParseError("the parse pool is closed")
        worker = min(self._workers, key=lambda candidate: candidate.in_hand)
        result: T = await worker.run(call)
        return result

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(worker.stop() for worker in self._workers))


class _Worker:
    """One child process and the stream to it; one call at a time."""

    def __init__(self) -> None:
        self.in_hand = 0  # calls sent or waiting for this process
        self._turn = asyncio.Lock()
        self._process: BaseProcess | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reaping: set[asyncio.Task[None]] = set()

    async def run(self, call: Callable[[], Any]) -> Any:
        self.in_hand += 1
        try:
            async with self._turn:
                return await self._call(call)
        finally:
            self.in_hand -= 1

    async def _call(self, call: Callable[[], Any]) -> Any:
        if self._process is None or not self._process.is_alive():
            self._discard()  # died between calls (OOM killer, a signal): start afresh
            await self._start()
        assert self._reader is not None and self._writer is not None
        data = pickle.dumps(call, pickle.HIGHEST_PROTOCOL)
        try:
            self._writer.write(len(data).to_bytes(_HEADER, "big") + data)
            await self._writer.drain()
            size = int.from_bytes(await self._reader.readexactly(_HEADER), "big")
            answer = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, OSError) as exc:
            self._discard()
            raise FeedParseError("the parse process died while parsing this feed") from exc
        except BaseException:  # cut off (CancelledError): the stream is mid-answer
            self._discard()
            raise
        try:
            ok, value = pickle.loads(answer)  # noqa: S301 - our child
        except Exception as exc:  # whole answer read: the stream and the process are fine
            raise FeedParseError(f"the parse process's answer could not be read: {exc!r}") from exc
        if ok:
            return value
        raise value

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("forkserver")
        process = context.Process(
            target=_serve, args=(theirs,), name="wirewatch-parse", daemon=True
        )
        try:
            # The first start also starts the fork server (~0.1 s): not on the loop.
            await asyncio.to_thread(process.start)
        finally:
            theirs.close()
        self._process = process
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)

    def _discard(self) -> None:
        """Kill the process (if any) and drop the stream; reaped in the background."""
        process, self._process = self._process, None
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(process.join, 5))
            self._reaping.add(task)
            task.add_done_callback(self._reaping.discard)

    async def stop(self) -> None:
        """Ask the child to end (end of stream), wait a little, kill it if it does not."""
        async with self._turn:
            process, writer = self._process, self._writer
            self._process = self._writer = self._reader = None
            if writer is not None:
                writer.close()
            if process is not None:
                await asyncio.to_thread(process.join, 5)
                if process.is_alive():
                    process.kill()
                    await asyncio.to_thread(process.join, 5)
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)


def _serve(sock: socket.socket) -> None:
    """The child's loop: read a call, run it, answer; end at the end of the stream."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # see the module docstring
    with sock, sock.makefile("rwb") as stream:
        while len(header := stream.read(_HEADER)) == _HEADER:
            call = pickle.loads(stream.read(int.from_bytes(header, "big")))  # noqa: S301 - our parent
            try:
                answer = pickle.dumps((True, call()), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # the poller raises it; this process goes on
                answer = _error_answer(exc)
            stream.write(len(answer).to_bytes(_HEADER, "big") + answer)
            stream.flush()


def _error_answer(exc: Exception) -> bytes:
    """The error as it is when the parent can read it back, else its reason as text.

    Some exceptions pickle but do not unpickle (``xml.sax.SAXParseException``: its
    ``__init__`` wants three arguments, its ``args`` hold one), so the check is a round trip.
    """
    try:
        answer = pickle.dumps((False, exc), pickle.HIGHEST_PROTOCOL)
        pickle.loads(answer)  # noqa: S301 - what we just wrote
    except Exception:
        return pickle.dumps((False, FeedParseError(f"feed parser failed: {exc!r}")))
    return answer
