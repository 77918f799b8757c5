"""``wirewatch backtest``: placeholder until the stories work lands (helper fills it)."""

from __future__ import annotations

from collections.abc import Callable

import click

from monitor.config import Config


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    """Add the ``backtest`` command to ``cli``."""
