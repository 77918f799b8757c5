"""Keep a worker's freed NER buffers in the process instead of giving them back per batch.

The NER model (thinc on numpy) allocates and frees arrays of a few MB for every batch.
With glibc's defaults, those land above its mmap threshold or at the top of the heap,
and glibc hands them back to the kernel when freed (``munmap``, or a trim once more than
``M_TRIM_THRESHOLD`` is free at the top), so the next batch faults the same memory in
again: ~240 page faults and ~0.7 ms of kernel time per item, about 15 % of the NER
stage. Raising both thresholds (``mallopt``, at run time) keeps that memory for the next
batch; peak RSS did not move (~230 MB with the model, either way), since the same buffers are
reused. ``.venv/bin/python -m bench.malloc`` measures it.

Applied where the model is loaded (:func:`workers.entities.load_ner_pipeline`), so every
process that runs NER — a worker, ``wirewatch entities`` or ``backtest``, a benchmark —
gets it, and a poller (no model) does not: it gained nothing from it (``bench/README.md``).
Only glibc has ``mallopt``; elsewhere (musl, macOS) nothing is done. Setting
``WIREWATCH_MALLOC_TUNING=0`` in the environment turns it off (for a comparison, or
beside an allocator of one's own in ``LD_PRELOAD``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

import structlog

log = structlog.get_logger()

ENV = "WIREWATCH_MALLOC_TUNING"
# glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's own ceiling for its sliding mmap threshold (on 64-bit), and enough free heap
# top for a batch of 128 texts (8 MB and 64 MB were the smallest that removed the faults).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20


@functools.cache  # once per process; later calls say whether it is in effect
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when applied."""
    if os.environ.get(ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        applied = bool(
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError) as exc:  # no libc symbol table to read: leave it
        log.warning("malloc_tuning_skipped", reason=str(exc))
        return False
    if not applied:
        log.warning("malloc_tuning_skipped", reason="mallopt refused the thresholds")
    return applied
