"""Sentence embeddings for the ``about:`` clause, from a model shipped inside a package.

Role: :func:`embed` turns texts into unit vectors whose dot product is their cosine
similarity; :func:`unavailable` says (without loading the model) why ``about:`` cannot
be used here, for config validation. The model is wordllama's default
(``l2_supercat``, 256 dimensions: static token embeddings distilled from Llama 2,
average-pooled), installed with the optional extra ``wirewatch[semantic]``: ~19 MB,
CPU only, about 0.1 ms an item.

No download at run time: ``WordLlama.load()`` looks for the tokenizer in
``wordllama/tokenizer/`` while the wheel ships it in ``wordllama/tokenizers/``, misses
it, and fetches it from the Hugging Face hub. Passing the package's own directory as
``cache_dir`` (``<cache_dir>/weights/``, ``<cache_dir>/tokenizers/``) finds both files
in the wheel, and ``disable_download=True`` makes a missing file an error rather than
a download.

Invariants: the model is loaded once per process (the first :func:`embed`, normally
while the workers compile their rules, before rq forks); importing this module costs
nothing (wordllama is imported on first use).
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Vector = NDArray[np.float32]

__all__ = ["DEFAULT_THRESHOLD", "INSTALL_HINT", "embed", "embed_one", "unavailable"]

# Measured with bench/semantic.py (docs/rules.md, "Choosing a threshold"): on its 8
# topics, 0.45 passes 2 of 32 items that share a topic's words but not its subject,
# finds about half of the related ones, and 0.03 % of background news.
DEFAULT_THRESHOLD = 0.45
INSTALL_HINT = "install the semantic extra: pip install 'wirewatch[semantic]'"


class _Model(Protocol):
    def embed(self, texts: list[str], norm: bool = ...) -> Vector: ...


@cache
def unavailable() -> str | None:
    """Why ``about:`` cannot be used in this environment, or ``None`` when it can."""
    try:
        _import()
    except ImportError as exc:
        return f"about: needs wordllama, which is not installed ({exc}): {INSTALL_HINT}"
    return None


def embed(texts: list[str]) -> Vector:
    """Unit vectors of ``texts``, one row each (a text with no known token: zeros)."""
    vectors = _model().embed(texts, norm=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: Vector = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit


def embed_one(text: str) -> Vector:
    """The unit vector of one text."""
    vector: Vector = embed([text])[0]
    return vector


def _import() -> Any:
    """wordllama's loader class. Its package ``__init__`` calls ``logging.basicConfig``;
    the root logger's handlers and level are put back so that ours stay in charge."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        from wordllama import WordLlama
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    loader: Any = WordLlama
    return loader


@cache
def _model() -> _Model:
    loader = _import()
    import wordllama

    packaged = Path(wordllama.__file__).parent
    model: _Model = loader.load(cache_dir=packaged, disable_download=True)
    return model
