"""Pack the poller's Redis commands in C (hiredis) instead of redis-py's Python packer.

Why: redis-py's asyncio connections encode every argument in Python (an ``Encoder``
call, a ``bytes.join`` per argument), while its sync ones use ``hiredis.pack_command``
when hiredis is installed. A changed poll sends a few hundred arguments (the first-seen
filter's item keys and revisions), and at that count packing costs more of the poller's
CPU than Redis spends on the commands. :func:`use_hiredis_packing` gives a pool's
connections the sync client's packer; without hiredis nothing changes.

Semantics are the sync client's (``redis.connection.HiredisRespSerializer``): the same
split of a multi-word command name, ``bytearray``/``memoryview`` as bytes, a value of an
unsupported type raising ``redis.DataError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import DataError

_pack_command: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis is optional
    _pack_command = None


def use_hiredis_packing(pool: aioredis.ConnectionPool) -> bool:
    """Make the connections ``pool`` creates from now on pack with hiredis; whether it
    could (hiredis installed)."""
    if _pack_command is None:
        return False  # pragma: no cover
    pool.connection_class = _packing(pool.connection_class)
    return True


_CLASSES: dict[type[Any], type[Any]] = {}


def _packing(base: type[Any]) -> type[Any]:
    """``base`` with the hiredis packer (one subclass per base, made once)."""
    if getattr(base, "_packs_with_hiredis", False):
        return base
    if base in _CLASSES:
        return _CLASSES[base]

    class HiredisPacking(base):  # type: ignore[misc]
        _packs_with_hiredis = True

        def pack_command(self, *args: Any) -> list[bytes]:
            return [_pack(args)]

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{base.__name__}"
    _CLASSES[base] = HiredisPacking
    return HiredisPacking


def _pack(args: tuple[Any, ...]) -> bytes:
    name = args[0]
    if isinstance(name, str):
        args = (*name.encode().split(), *args[1:])
    elif b" " in name:
        args = (*name.split(), *args[1:])
    args = tuple(bytes(arg) if isinstance(arg, (bytearray, memoryview)) else arg for arg in args)
    assert _pack_command is not None
    try:
        packed = _pack_command(args)
    except TypeError as exc:
        raise DataError(str(exc)) from exc
    return packed
