"""``/api/alerts/stream``: the alert history as it happens, as server-sent events.

One event per entry of the ``alerts`` stream (``XREAD BLOCK``), named after the entry's
``event`` field (``raised``, ``delivered``, ``dead``, ``digest``, ``skip``), with the
stream entry id as the SSE ``id`` and the entry's fields as JSON ``data``. A client that
reconnects with ``Last-Event-ID`` (browsers do) resumes after that entry, so nothing is
missed while the stream is capped by ``delivery.history_max``; a new client starts at
the newest entry.

Lifetime: each read blocks at most :data:`BLOCK_MS`; between reads the handler ends when
the client has gone (its transport is closing, or a write fails) or the app shuts down
(:data:`~monitor.api_state.STOPPING`), so neither a closed tab nor a shutdown waits on
Redis for long. A comment line every :data:`PING_S` keeps proxies from timing out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from monitor.api_context import KEYS, REDIS
from monitor.api_state import SCRUB, STOPPING
from monitor.redis_text import as_text

log = structlog.get_logger()

BLOCK_MS = 1000
PING_S = 15.0
RETRY_MS = 2000  # how soon a browser reconnects after the stream ends
_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")


def sse_event(entry_id: str, fields: dict[str, str], scrub: Callable[[str], str]) -> bytes:
    """One SSE message: ``id``, ``event`` and the fields as one line of JSON ``data``."""
    data = scrub(json.dumps({"stream_id": entry_id, **fields}, ensure_ascii=False))
    name = re.sub(r"[^a-z_]", "", fields.get("event", "")) or "message"
    return f"id: {entry_id}\nevent: {name}\ndata: {data}\n\n".encode()


async def alert_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    client, key, stopping = app[REDIS], app[KEYS].alert_history(), app[STOPPING]
    resume = request.headers.get("Last-Event-ID", "").strip()
    if _ENTRY_ID.fullmatch(resume):
        last = resume
    else:  # the newest entry now: "$" kept across reads would drop entries in between
        newest: Any = await client.xrevrange(key, count=1)
        last = as_text(newest[0][0]) if newest else "0-0"
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    sent, pinged = 0, time.monotonic()
    try:
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        while not stopping.is_set() and not _gone(request):
            reply: Any = await client.xread({key: last}, count=100, block=BLOCK_MS)
            for _stream, entries in reply or ():
                for raw_id, raw in entries:
                    last = as_text(raw_id)
                    fields = {as_text(k): as_text(v) for k, v in raw.items()}
                    await response.write(sse_event(last, fields, app[SCRUB]))
                    sent += 1
            if time.monotonic() - pinged >= PING_S:
                await response.write(b": ping\n\n")
                pinged = time.monotonic()
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError too
        pass
    log.debug("api_stream_closed", sent=sent, shutdown=stopping.is_set())
    return response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
