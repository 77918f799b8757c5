"""Redis replies as text, whichever way the client was built.

Role: some connections decode responses (``decode_responses=True``) and some do not (rq
needs bytes), and a module often reads through both; :func:`as_text` gives ``str``
either way. One helper, so the modules that read replies do not each keep their own.
"""

from __future__ import annotations

__all__ = ["as_text"]


def as_text(value: object) -> str:
    """``bytes`` decoded as UTF-8; anything else (``str``, a number) as ``str(value)``."""
    return value.decode() if isinstance(value, bytes) else str(value)
