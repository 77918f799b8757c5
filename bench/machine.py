"""What the benchmarks say about the machine their figures come from."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


def cpu_model(default: str = "?") -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` is often
    empty on Linux), else ``platform.processor()``, else ``default``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or default


def versions(packages: Iterable[str]) -> str:
    """``"name 1.2.3, other 4.5"`` for the installed distributions named."""
    return ", ".join(f"{name} {metadata.version(name)}" for name in packages)
