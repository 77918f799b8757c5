"""The tiered extractor: the model reads the headline and lede, a fast pass the rest.

Covers :func:`workers.entities.lede` (where the model stops), the fast pass past it
(:func:`workers.entities_lift.Lift.apply` with ``read``: the item's own names, names
after a title, the entity memory), :class:`workers.entities_memory.EntityMemory` and
:class:`workers.entities_ops.NerRunner` (the model run cheaper, same output).
"""

from __future__ import annotations

from pathlib import Path

import feedparser
import pytest

from monitor.config import NerSettings
from monitor.normalise import html_to_text
from workers.entities import DEFAULT_MAX_CHARS, SpacyExtractor, lede, load_extractor
from workers.entities_lift import Lift, inside_longer_name
from workers.entities_memory import EntityMemory
from workers.entities_ops import NerRunner
from workers.model import Entity

SEED = Path(__file__).resolve().parent.parent / "seeds" / "feeds" / "world.xml"
FILLER = "The talks went on for hours and nothing much was agreed at all. " * 12


@pytest.fixture(scope="module")
def shipped() -> SpacyExtractor:
    extractor = load_extractor(NerSettings())
    assert isinstance(extractor, SpacyExtractor), extractor.name
    return extractor


def tiered(shipped: SpacyExtractor, **kwargs: int) -> SpacyExtractor:
    """A fresh extractor (empty cache and memory) on the shipped model and lift."""
    return SpacyExtractor(shipped.nlp, "test", lift=shipped.lift, **kwargs)  # type: ignore[arg-type]


def seed_article() -> str:
    entry = feedparser.parse(SEED.read_bytes()).entries[0]
    return html_to_text(entry.title) + "\n" + html_to_text(entry.summary)


def assert_offsets(text: str, entities: list[Entity]) -> None:
    for e in entities:
        assert text[e.start : e.end] == e.text, e


# --- where the model stops ---------------------------------------------------------------


def test_lede_keeps_short_texts_whole() -> None:
    assert lede("Title\nShort summary.", 100) == "Title\nShort summary."


def test_lede_ends_at_a_sentence_end() -> None:
    text = "Storm hits coast\nA storm hit the coast on Monday. Ferries were cancelled later."
    assert lede(text, 60) == "Storm hits coast\nA storm hit the coast on Monday."


def test_lede_does_not_cut_a_name_in_two() -> None:
    text = "Talks\n" + "word " * 20 + "National Security Adviser Jake Sullivan flew in."
    cut = lede(text, len(text) - 14)  # the plain cut would end at "… Jake"
    assert cut.endswith("word")
    assert text.startswith(cut)


# --- the fast pass past the cut ----------------------------------------------------------


def test_names_past_the_cut_are_found_without_the_model(shipped: SpacyExtractor) -> None:
    article = seed_article()
    assert len(article) > 4 * DEFAULT_MAX_CHARS  # the model reads a small part of it
    [entities] = tiered(shipped).extract_many([article])
    found = {(e.text, e.label) for e in entities}
    # After a title: "Foreign Ministry spokesman Zhao Lijian", "… Adviser Jake Sullivan".
    assert {("Zhao Lijian", "PERSON"), ("Jake Sullivan", "PERSON")} <= found
    assert ("Dmitry Peskov", "PERSON") in found
    assert all(e.start > DEFAULT_MAX_CHARS for e in entities if e.text == "Jake Sullivan")
    assert_offsets(article, entities)


def test_the_model_read_names_are_found_again_past_the_cut(shipped: SpacyExtractor) -> None:
    text = "Storm warning\nA storm hit Nantucket on Monday, officials said. " + FILLER
    text += "Ferries to Nantucket were cancelled."
    [model_only] = tiered(shipped, max_chars=10**9).extract_many([text[:90]])
    assert ("Nantucket", "GPE") in {(e.text, e.label) for e in model_only}
    [entities] = tiered(shipped, max_chars=90).extract_many([text])
    later = [e for e in entities if e.start > 90]
    assert [(e.text, e.label) for e in later] == [("Nantucket", "GPE")]
    assert_offsets(text, entities)


def test_memory_finds_a_name_from_an_earlier_item(shipped: SpacyExtractor) -> None:
    first = "Sullivan to meet Yang\nJake Sullivan will meet Yang Jiechi in Rome on Monday."
    second = "Talks go on\nThe talks went on for a second day. " + FILLER
    second += "Officials close to Jake Sullivan said little."
    extractor = tiered(shipped, max_chars=100)
    assert "Jake Sullivan" not in {e.text for e in extractor.extract_many([second])[0]}
    extractor.clear_cache()
    [_, later] = extractor.extract_many([first, second])
    assert [(e.text, e.label) for e in later if e.text == "Jake Sullivan"] == [
        ("Jake Sullivan", "PERSON")
    ]
    assert_offsets(second, later)
    extractor.clear_cache()  # a fresh process: nothing remembered, nothing cached
    assert "Jake Sullivan" not in {e.text for e in extractor.extract_many([second])[0]}
    without = tiered(shipped, max_chars=100, memory_size=0)
    assert "Jake Sullivan" not in {e.text for e in without.extract_many([first, second])[1]}


def test_the_fast_pass_only_runs_past_the_cut() -> None:
    text = "Gazprom deal\nGazprom signed. Later, Gazprom said more."
    found = [Entity("Gazprom", "ORG", 0, 7)]
    memory = EntityMemory()
    memory.remember([Entity("Paris", "GPE", 0, 5)])
    assert Lift().apply(text, found) == Lift().apply(text, found, read=len(text), memory=memory)


def test_a_title_before_a_name_past_the_cut_makes_a_person() -> None:
    text = (
        "Talks\nNothing new. Kremlin spokesman Dmitry Peskov said it. General Motors rose, "
        "its chief executive Mary Barra said. Director General Tedros spoke."
    )
    lifted = Lift().apply(text, [], read=text.index("Nothing"))
    people = [(e.text, e.label) for e in lifted if e.label == "PERSON"]
    # Not "Motors" after "General", nor "General Tedros" after "Director".
    assert people == [("Dmitry Peskov", "PERSON"), ("Mary Barra", "PERSON")]


# --- the entity memory -------------------------------------------------------------------


def test_memory_is_a_bounded_lru() -> None:
    memory = EntityMemory(size=2)
    memory.remember([Entity("Gazprom", "ORG", 0, 7), Entity("Yang Jiechi", "PERSON", 0, 11)])
    memory.remember([Entity("Gazprom", "ORG", 0, 7)])  # used again: moves to the front
    memory.remember([Entity("Rosneft", "ORG", 0, 7)])  # evicts Yang Jiechi
    text = "Gazprom, Rosneft and Yang Jiechi."
    assert [(e.text, e.start) for e in memory.find(text)] == [("Gazprom", 0), ("Rosneft", 9)]
    assert len(memory) == 2


def test_memory_forgets_ambiguous_names_and_ignores_common_words() -> None:
    memory = EntityMemory()
    memory.remember([Entity("Jordan", "PERSON", 0, 6), Entity("The", "ORG", 0, 3)])
    memory.remember([Entity("Jordan", "GPE", 0, 6), Entity("x", "ORG", 0, 1)])
    assert list(memory.find("Jordan and The x")) == []
    assert len(memory) == 1


def test_memory_finds_whole_names_only() -> None:
    memory = EntityMemory()
    memory.remember([Entity("Google", "ORG", 0, 6), Entity("Mike", "PERSON", 0, 4)])
    text = "Googleplex, Google My Business, Mike Gunderloy; ask Google. In Google we trust."
    assert [e.start for e in memory.find(text)] == [text.index("Google."), text.index("Google we")]
    assert [e.start for e in memory.find(text, text.index("Google."))] == [
        text.index("Google."),
        text.index("Google we"),
    ]
    assert [e.start for e in memory.find(text, text.index("In Google"))] == [
        text.index("Google we")
    ]


def test_inside_longer_name() -> None:
    text = "Google My Business; President Trump; In Ruby; Mike Gunderloy"
    assert inside_longer_name(text, 0, 6)  # "Google" before "My"
    assert not inside_longer_name(text, text.index("Trump"), text.index("Trump") + 5)
    assert not inside_longer_name(text, text.index("Ruby"), text.index("Ruby") + 4)
    assert inside_longer_name(text, text.index("Gunderloy"), len(text))  # after "Mike"


# --- the model run cheaper ---------------------------------------------------------------


def test_runner_gives_what_nlp_pipe_gives(shipped: SpacyExtractor) -> None:
    runner = shipped.runner
    assert runner.stepped  # the stepped decoder passed its start-up check here
    texts = [seed_article(), "", "nothing here", "Apple sued Samsung in Seoul.", "Xi " * 50]
    stepped = runner(texts)
    shipped_way = list(NerRunner(shipped.nlp, fast=False)(texts))
    spans = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in stepped]
    assert spans == [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in shipped_way]
    assert any(spans)


def test_runner_keeps_nlp_pipe_for_other_pipelines(shipped: SpacyExtractor) -> None:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    runner = NerRunner(nlp)
    assert not runner.stepped
    assert [len(list(doc.sents)) for doc in runner(["One. Two.", "Three."])] == [2, 1]
