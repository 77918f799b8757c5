"""A long-lived worker's NER vocabulary does not grow with the words it reads.

Jobs run in the worker process (``workers.fork: false``), so one spaCy pipeline reads
every item for weeks; without spaCy's ``memory_zone`` each new word stays in its
string store for good (~3 MB per 1,000 texts of novel names, measured).
"""

from __future__ import annotations

import random
import string

import pytest

from monitor.config import NerSettings
from workers.entities import SpacyExtractor, load_extractor


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
    extractor.extract_many(_novel_texts(20, seed=1))  # warm: labels and the like
    before = len(extractor.nlp.vocab.strings)
    found = extractor.extract_many(_novel_texts(300, seed=2))
    assert any(found), "the model found names in the texts"
    assert len(extractor.nlp.vocab.strings) == before
