"""The worker's malloc tuning: freed numpy buffers stay in the process (no page faults
to get them back), and the environment can turn it off. Each case runs in a fresh
interpreter, since mallopt cannot be undone."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys

import pytest

from workers.entities import AUTO_MODELS
from workers.malloc_tuning import ENV

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

# The shape of a NER batch: a few MB of arrays made, combined and freed, again and again.
CHILD = """
import resource
import numpy as np
from workers.malloc_tuning import keep_freed_memory

{setup}

def batch():
    a = np.ones((6000, 96), dtype=np.float32)
    b = np.ones((6000, 384), dtype=np.float32)
    return float((b + a @ np.ones((96, 384), dtype=np.float32)).sum())

for _ in range(3):
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(keep_freed_memory(), faults)  # cached: what the setup did (or does now)
"""


def run_child(setting: str, setup: str = "keep_freed_memory()") -> tuple[bool, float]:
    """``setup`` runs, then the batches are measured (faults per batch)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(setup=setup)],
        env=os.environ | {ENV: setting},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    applied, faults = done.stdout.split()
    return applied == "True", float(faults)


def test_tuned_process_reuses_freed_buffers_instead_of_faulting_them_in() -> None:
    applied, faults = run_child("1")
    assert applied
    assert faults < 50  # ~2,400 pages a batch without the tuning (glibc 2.36)


def test_environment_turns_it_off() -> None:
    applied, _ = run_child("0")
    assert not applied


def test_loading_the_ner_model_applies_it() -> None:
    """Every process that runs NER gets it (a worker, ``wirewatch entities``, a bench),
    with no call of its own: the model's loader applies it."""
    model = next((name for name in AUTO_MODELS if importlib.util.find_spec(name)), None)
    if model is None:
        pytest.skip("no spaCy model installed")
    setup = f"from workers.entities import load_ner_pipeline\nload_ner_pipeline({model!r})"
    applied, faults = run_child("1", setup)
    assert applied
    assert faults < 50
