"""The parse processes (monitor/parse_pool.py): answers and errors come back, a process
that dies or is cut off costs one call and is replaced. The calls are stdlib functions,
so the children need not import the tests."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psutil
import pytest

from monitor.parse_pool import ParsePool
from monitor.poll_errors import FeedParseError

T = TypeVar("T")


def run_with_pool(scenario: Callable[[ParsePool], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = ParsePool(1)
        try:
            return await scenario(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def test_answers_and_errors_come_back_and_the_process_stays() -> None:
    async def scenario(pool: ParsePool) -> tuple[int, int, int]:
        first = await pool.parse(os.getpid)
        with pytest.raises(ValueError, match="invalid literal"):
            await pool.parse(functools.partial(int, "x"))
        return first, await pool.parse(functools.partial(int, "7")), await pool.parse(os.getpid)

    first, seven, again = run_with_pool(scenario)
    assert seven == 7 and first == again != os.getpid()


def test_a_process_that_dies_costs_its_call_only() -> None:
    async def scenario(pool: ParsePool) -> int:
        with pytest.raises(FeedParseError, match="died"):
            await pool.parse(functools.partial(os._exit, 3))
        return await pool.parse(functools.partial(int, "8"))

    assert run_with_pool(scenario) == 8


def test_a_process_killed_between_calls_is_replaced_before_the_next_one() -> None:
    async def scenario(pool: ParsePool) -> tuple[int, int]:
        first = await pool.parse(os.getpid)
        os.kill(first, signal.SIGKILL)
        await asyncio.to_thread(psutil.Process(first).wait, 5)
        return first, await pool.parse(os.getpid)

    first, second = run_with_pool(scenario)
    assert second != first


def test_a_call_cut_off_kills_its_stuck_process() -> None:
    async def scenario(pool: ParsePool) -> tuple[int, int]:
        first = await pool.parse(os.getpid)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.parse(functools.partial(time.sleep, 60)), 0.5)
        return first, await pool.parse(os.getpid)

    started = time.monotonic()
    first, second = run_with_pool(scenario)
    assert second != first and time.monotonic() - started < 30
    deadline = time.monotonic() + 5
    while psutil.pid_exists(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(first)  # killed and reaped, not left sleeping


def test_closing_ends_the_processes() -> None:
    async def scenario(pool: ParsePool) -> int:
        pid = await pool.parse(os.getpid)
        await pool.close()
        with pytest.raises(FeedParseError, match="closed"):
            await pool.parse(os.getpid)
        return pid

    pid = run_with_pool(scenario)
    assert not psutil.pid_exists(pid)


def assert_parse_error_and_the_process_stays(expression: str, reason: str) -> None:
    """``eval(expression)`` in a parse process ends in a FeedParseError matching
    ``reason``, and the same process answers the next call (it was not replaced)."""

    async def scenario(pool: ParsePool) -> tuple[int, int]:
        first = await pool.parse(os.getpid)
        with pytest.raises(FeedParseError, match=reason):
            await pool.parse(functools.partial(eval, expression))
        return first, await pool.parse(os.getpid)

    first, again = run_with_pool(scenario)
    assert first == again


_SAX_ERROR = (
    "__import__('xml.sax').sax.SAXParseException("
    "'{}', None, __import__('xml.sax.xmlreader').sax.xmlreader.Locator())"
)


def test_an_error_that_does_not_pickle_still_comes_back_with_its_reason() -> None:
    """A parser error carrying something unpicklable (here a generator) reaches the
    poller as a FeedParseError naming it, and the process goes on."""
    raise_it = "(_ for _ in ()).throw(ValueError('bad entry', (x for x in ())))"
    assert_parse_error_and_the_process_stays(raise_it, "bad entry")


def test_an_error_that_pickles_but_does_not_unpickle_comes_back_with_its_reason() -> None:
    """``SAXParseException`` pickles, but unpickling it raises TypeError: the poller gets
    a FeedParseError naming it, and the process goes on (no restart)."""
    raise_it = f"(_ for _ in ()).throw({_SAX_ERROR.format('not well-formed')})"
    assert_parse_error_and_the_process_stays(raise_it, "not well-formed")


def test_an_answer_that_does_not_unpickle_is_a_parse_error_and_the_process_stays() -> None:
    """A result the parent cannot read back costs its call only: the whole answer was
    read, so the stream is in step and the process is kept."""
    assert_parse_error_and_the_process_stays(_SAX_ERROR.format("odd result"), "could not be read")
