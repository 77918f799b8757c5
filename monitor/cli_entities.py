"""``wirewatch entities``: the configured NER over JSON lines, for debugging rules.

Reads ``{"text": ...}`` lines on stdin and prints one line per input line:
``{"entities": [{"text", "label", "canonical", "start", "end", "salience"}]}`` with
character offsets into that ``text``. A bad line (not JSON, no string ``text``) prints
``{"error": "line N: why"}`` in its place and the run goes on; the exit status is then 1.
Uses ``workers.ner`` from ``--config`` (model, gazetteer, aliases); texts go through
``nlp.pipe`` in batches of ``--batch-size``. Log lines (e.g. ``ner_model_missing`` when
the fallback is used) go to stderr, so stdout stays JSON lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
import structlog

from monitor.config import Config
from monitor.logs import configure_logging


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    """Add the ``entities`` command to ``cli``."""

    @cli.command("entities")
    @click.option(
        "--batch-size",
        type=click.IntRange(1, 10_000),
        default=64,
        show_default=True,
        help="lines per nlp.pipe batch (1: answer each line at once, for interactive use)",
    )
    def entities(batch_size: int) -> None:
        """Entities of each JSON line {"text": ...} on stdin, one JSON line out per line."""
        from workers.api import annotate_lines, load_extractor

        config = load()
        # stdout carries the data: log lines (ner_model_missing) go to stderr
        configure_logging(config.logging.level, config.logging.format)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
        extractor = load_extractor(config.workers.ner)
        failed = 0
        for out, ok in annotate_lines(extractor, sys.stdin, batch_size):
            click.echo(out)
            failed += not ok
        if failed:
            click.echo(f"{failed} bad input line(s)", err=True)
            sys.exit(1)
