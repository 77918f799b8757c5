"""structlog set-up: JSON lines when stdout is not a terminal, readable lines when it is.

Event names are stable snake_case (``feed_polled``, ``alert_delivered``); context such
as the feed, job or rule is bound with contextvars so every line of a unit of work
carries it. Secrets never reach a log call: config secrets are ``SecretStr``.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

Format = Literal["auto", "json", "console"]


def configure_logging(level: str = "info", fmt: Format = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (rq, aiohttp): route their warnings to stderr
    # in a plain format; rq's per-job chatter stays at WARNING.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("rq").setLevel(logging.WARNING)
