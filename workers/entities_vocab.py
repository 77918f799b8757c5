"""Bounding a long-lived NER process's vocabulary without forgetting every word each call.

Role: :class:`VocabWindow` is the memory zone :class:`workers.entities.SpacyExtractor`
runs the model in. spaCy keeps every string and lexeme it meets for good (~3 MB per
1,000 texts of novel names, measured), and jobs run in one worker process for weeks;
spaCy's ``memory_zone`` frees what a zone added when it exits. A zone per call frees
everything at once, but then every call meets every word anew: tokenising a news item
cost ~0.57 ms that way against ~0.35 ms in a zone that had seen 1,500 earlier items,
and the whole NER call 2.50 against 2.31 ms per item of the end-to-end benchmark's news
(measured in one process, the two ways alternating). So the zone is held across calls
and renewed every ``texts`` texts: memory stays bounded by one window's new words, and
words that recur within a window are met once.

Invariants: no spaCy ``Doc`` outlives the call that made it (the extractor keeps only
its own :class:`~workers.model.Entity` values), so closing the zone at the start of a
later call never leaves a ``Doc`` pointing at freed strings; and a pipeline has one
window (:meth:`VocabWindow.of`), shared by every extractor that runs it, because spaCy's
memory zones must not nest.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

__all__ = ["DEFAULT_WINDOW_TEXTS", "VocabWindow"]

DEFAULT_WINDOW_TEXTS = 5_000  # ~15 MB of new words at most, at the measured rate


_ATTRIBUTE = "_wirewatch_vocab_window"  # where a pipeline keeps its one window


class VocabWindow:
    """``window.enter(n)`` before the model reads ``n`` texts; ``window.close()`` frees."""

    @classmethod
    def of(cls, nlp: Any) -> VocabWindow:
        """The window of ``nlp``, made on first use: one per pipeline, so two extractors
        sharing a pipeline (the benchmark's variants) never open nested zones."""
        window = getattr(nlp, _ATTRIBUTE, None)
        if not isinstance(window, cls):
            window = cls(nlp)
            setattr(nlp, _ATTRIBUTE, window)
        return window

    def __init__(self, nlp: Any, texts: int = DEFAULT_WINDOW_TEXTS) -> None:
        self._nlp = nlp
        self.texts = texts
        self._zone: AbstractContextManager[object] | None = None
        self._read = 0

    def enter(self, count: int) -> None:
        """Make sure a zone is open for ``count`` more texts (a new one past the window)."""
        if self._zone is not None and self._read + count > self.texts:
            self.close()
        if self._zone is None:
            make = getattr(self._nlp, "memory_zone", None)  # spaCy 3.8+
            if make is None:
                return
            self._zone = make()
            self._zone.__enter__()
            self._read = 0
        self._read += count

    def close(self) -> None:
        """Free every string and lexeme the open zone added (no ``Doc`` of it may live)."""
        zone, self._zone = self._zone, None
        if zone is not None:
            zone.__exit__(None, None, None)
