"""Running the NER model cheaper, with the same output: how the model is called, not what.

Role: :class:`NerRunner` is what :class:`workers.entities.SpacyExtractor` calls instead of
``nlp.pipe``. Two changes, each measured by ``bench/entities.py`` (same entities, fewer
CPU seconds) and checked against ``nlp.pipe`` when the runner is built:

- **The decoder loop in Python.** spaCy's greedy NER decoder (``Parser._parseC``) runs
  without the GIL, but in the 3.8 wheels every call of ``StateC.B()`` inside the
  transition validity checks takes the GIL back (``PyGILState_Ensure``: a mutex lock
  and unlock, ~74 checks a token). Profiled, that was ~45 % of the model's time. The
  same decoder stepped from Python through spaCy's public per-step calls
  (``model.predict(states)``, ``Parser.transition_states``) holds the GIL throughout,
  so those checks cost nothing: ~2× the items per CPU second.
- **numpy's BLAS instead of BLIS** for the dense layers: the ``blis`` wheel selects its
  generic reference kernel on every CPU (``BLIS_ARCH_DEBUG=1`` says "sub-configuration
  'generic'"); numpy's bundled OpenBLAS picks a tuned one (~1.3×). OpenBLAS would spread
  each product over every core, which on a worker host (one process per core) only adds
  contention, so the model runs under a one-thread limit from ``threadpoolctl``. Without
  ``threadpoolctl`` the model keeps thinc's BLIS ops.

Either change is dropped, and ``nlp.pipe`` used as spaCy ships it, when the pipeline is
not a plain NER-only one or when the probe texts come out differently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["NerRunner"]

BlasScope = Callable[[], AbstractContextManager[object]]

# Checked at start-up: the stepped decoder must give these exactly what nlp.pipe gives.
_PROBES = (
    "Russia sought China military aid for Ukraine war, says US\n"
    "Chinese Foreign Ministry spokesman Zhao Lijian said on Monday in Beijing that "
    "National Security Adviser Jake Sullivan will meet Yang Jiechi in Rome.",
    "Apple sued Samsung in South Korea for $2 billion, Bloomberg News reported.",
    "",
    "nothing here at all",
)


class NerRunner:
    """``runner(texts)`` → spaCy ``Doc`` objects with ``ents`` set, as ``nlp.pipe`` would."""

    def __init__(self, nlp: Any, *, batch_size: int = 128, fast: bool = True) -> None:
        self.nlp = nlp
        self.batch_size = batch_size
        self.blas: BlasScope = contextlib.nullcontext
        self.stepped = False
        if fast and nlp.pipe_names == ["ner"]:
            self.blas = _use_numpy_blas(nlp)
            self.stepped = _stepped_matches(nlp, self.blas)

    def __call__(self, texts: Sequence[str]) -> list[Any]:
        with self.blas():
            if not self.stepped:
                return list(self.nlp.pipe(texts, batch_size=self.batch_size))
            return _stepped_pipe(self.nlp, texts, self.batch_size)


def _stepped_pipe(nlp: Any, texts: Sequence[str], batch_size: int) -> list[Any]:
    """``nlp.pipe`` for an NER-only pipeline, decoding from Python (module docstring).

    Each step costs some Python whatever the number of texts in it, so a whole batch is
    decoded at once (``Parser.pipe`` splits it in four; here that costs ~25 % more).
    """
    ner = nlp.get_pipe("ner")
    docs = [nlp.make_doc(text) for text in texts]
    for start in range(0, len(docs), batch_size):
        _decode(ner, docs[start : start + batch_size])
    return docs


def _decode(ner: Any, docs: list[Any]) -> None:
    """Greedy transition decoding of ``docs`` (what ``Parser.greedy_parse`` does)."""
    batch = ner.moves.init_batch(docs)
    model = ner.model.predict(docs)  # token vectors and the precomputed first layer
    states = [state for state in batch if not state.is_final()]
    while states:
        scores = model.predict(states)
        states = ner.transition_states(states, scores)
    model.clear_memory()
    ner.set_annotations(docs, batch)


def _stepped_matches(nlp: Any, blas: BlasScope) -> bool:
    """Whether the stepped decoder runs here and gives ``nlp.pipe``'s entities."""
    try:
        ner = nlp.get_pipe("ner")
        if ner.cfg.get("beam_width", 1) != 1:
            return False
        with blas():
            stepped = _stepped_pipe(nlp, _PROBES, 4)
            shipped = list(nlp.pipe(_PROBES))
    except Exception:  # an incompatible spaCy: use nlp.pipe as shipped
        return False
    return [_spans(doc) for doc in stepped] == [_spans(doc) for doc in shipped]


def _spans(doc: Any) -> list[tuple[int, int, str]]:
    return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]


def _use_numpy_blas(nlp: Any) -> BlasScope:
    """Switch ``nlp``'s models to numpy's BLAS; the returned scope pins it to one thread.

    Returns ``contextlib.nullcontext`` (and leaves the ops alone) when ``threadpoolctl``
    is not installed or numpy's BLAS is not OpenBLAS.
    """
    try:
        from threadpoolctl import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            ThreadpoolController,
        )
    except ImportError:
        return contextlib.nullcontext
    from thinc.api import NumpyOps

    controller = ThreadpoolController()
    if not any(lib.get("internal_api") == "openblas" for lib in controller.info()):
        return contextlib.nullcontext
    ops = NumpyOps(use_blis=False)
    for name in nlp.pipe_names:
        for node in nlp.get_pipe(name).model.walk():
            node.ops = ops

    def one_thread() -> AbstractContextManager[object]:
        scope: AbstractContextManager[object] = controller.limit(limits=1, user_api="blas")
        return scope

    return one_thread
