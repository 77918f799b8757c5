"""A long-lived worker's NER vocabulary does not grow with the words it reads.

Jobs run in the worker process (``workers.fork: false``), so one spaCy pipeline reads
every item for weeks; without spaCy's ``memory_zone`` each new word stays in its
string store for good (~3 MB per 1,000 texts of novel names, measured). The zone is
held for a window of texts (:class:`workers.entities_vocab.VocabWindow`): growth is
bounded by one window, and a word met twice within it is added once.
"""

from __future__ import annotations

import random
import string

import pytest

from monitor.config import NerSettings
from workers.entities import SpacyExtractor, load_extractor
from workers.entities_vocab import VocabWindow


def _novel_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(8))

    return [
        f"{word().capitalize()} {word().capitalize()} met {word().capitalize()} in "
        f"{word().capitalize()} on {word()} to discuss {word()} {word()}."
        for _ in range(count)
    ]


def test_new_words_leave_no_strings_behind() -> None:
    extractor = load_extractor(NerSettings())
    if not isinstance(extractor, SpacyExtractor):
        pytest.skip("no spaCy model installed")
    extractor.vocab_window = VocabWindow(extractor.nlp, texts=100)
    extractor.extract_many(_novel_texts(20, seed=1))  # warm: labels and the like
    extractor.vocab_window.close()
    before = len(extractor.nlp.vocab.strings)
    one_window = 0
    for seed in range(2, 8):  # 600 texts, six windows of 100
        found = extractor.extract_many(_novel_texts(100, seed=seed))
        assert any(found), "the model found names in the texts"
        grown = len(extractor.nlp.vocab.strings) - before
        one_window = one_window or grown
        assert 0 < grown <= one_window * 1.5  # one window's words at most, not six
    extractor.vocab_window.close()
    assert len(extractor.nlp.vocab.strings) == before


def test_words_stay_known_until_the_window_closes() -> None:
    """A word met again in a later call of the same window is not looked up anew (that
    is the point of the window: ~0.2 ms of tokenising per item); closing frees it."""
    extractor = load_extractor(NerSettings())
    if not isinstance(extractor, SpacyExtractor):
        pytest.skip("no spaCy model installed")
    extractor.vocab_window = VocabWindow(extractor.nlp, texts=1_000)
    texts = _novel_texts(50, seed=9)
    novel = texts[0].split()[0]
    assert novel not in extractor.nlp.vocab.strings
    extractor.extract_many(texts)
    assert novel in extractor.nlp.vocab.strings  # still known for the next call
    extractor.vocab_window.close()
    assert novel not in extractor.nlp.vocab.strings


def test_extractors_sharing_a_pipeline_share_its_window() -> None:
    """spaCy's memory zones must not nest: one window per pipeline, whoever runs it."""
    extractor = load_extractor(NerSettings())
    if not isinstance(extractor, SpacyExtractor):
        pytest.skip("no spaCy model installed")
    other = SpacyExtractor(extractor.nlp, "same pipeline", cache_size=0)
    assert other.vocab_window is extractor.vocab_window
    other.extract_many(_novel_texts(5, seed=11))
    extractor.extract_many(_novel_texts(5, seed=12))  # the same zone, not a nested one
    extractor.vocab_window.close()
