"""The poller's Redis connections pack commands with hiredis: same bytes on the wire."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from monitor.redis_pack import use_hiredis_packing


def test_commands_packed_by_hiredis_store_and_read_back_the_same_values(
    redis_url: str, prefix: str
) -> None:
    async def main() -> None:
        pool = aioredis.ConnectionPool.from_url(redis_url, decode_responses=True)
        assert use_hiredis_packing(pool)
        client = aioredis.Redis.from_pool(pool)
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            assert type(connection).__name__.startswith("HiredisPacking")
            await pool.release(connection)
            key = f"{prefix}h"
            values: dict[str | bytes, str | int | float | bytes] = {
                "s": "ünïcode \x00 text",
                "i": 42,
                "f": 0.1 + 0.2,
                "b": b"\xff\x00",
            }
            await client.hset(key, mapping=values)  # type: ignore[arg-type]
            await client.hset(key, "m", memoryview(b"view"))
            raw = await client.execute_command("HGET", key, "f")  # type: ignore[no-untyped-call]
            assert raw == repr(0.1 + 0.2)  # as redis-py's own packer writes a float
            assert await client.hget(key, "i") == "42"
            assert await client.hget(key, "s") == "ünïcode \x00 text"
            assert await client.hget(key, "m") == "view"
            # A multi-word command name is split, as redis-py does it.
            assert await client.execute_command("CONFIG GET", "maxmemory-policy")  # type: ignore[no-untyped-call]
            async with client.pipeline(transaction=True) as pipe:
                pipe.incr(f"{prefix}n")
                pipe.incrbyfloat(f"{prefix}n", 1.5)
                assert await pipe.execute() == [1, 2.5]
            with pytest.raises(DataError):
                await client.set(f"{prefix}x", object())  # type: ignore[arg-type]
        finally:
            await client.aclose()

    asyncio.run(main())
