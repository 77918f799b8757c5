"""The prefilter narrows the rules to evaluate and never changes the result."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.evaluate import Document
from workers.match import RuleSet
from workers.model import Entity, StoryView
from workers.prefilter import Prefilter, anchors
from workers.query import QueryError, parse_query

SETS = {"aid": ["aid", "military aid", "drone*", "=arms"]}
WORDS = ["China", "Russia", "weapons", "aid", "sought", "seek", "military", "Moscow", "arms"]


def test_anchors_follow_the_boolean_structure() -> None:
    def of(text: str) -> frozenset[str] | None:
        return anchors(parse_query(text, term_sets=SETS).root)

    assert of("China") == {"k:china"}
    assert of("China OR Moscow") == {"k:china", "k:moscow"}
    assert of("Moscow AND Xi") == {"k:moscow"}  # the longer (rarer-looking) word
    assert of('"military aid"') == {"k:militari"}
    assert of("sanction* =aids") in ({"p:sanction"}, {"f:aids"})
    assert of("@aid") == {"k:aid", "k:militari", "p:drone", "f:arms"}
    assert of("gpe:China AND lang:en") == {"e:china"}
    assert of("lang:en AND outlets >= 3") == {"l:en"}
    assert of("outlets >= 3 within 60m") is None
    assert of("China -Taiwan") == {"k:china"}


def test_rules_without_anchors_are_always_candidates() -> None:
    rules = [parse_query(q).root for q in ("China", "outlets >= 2", "Moscow AND outlets >= 1")]
    prefilter = Prefilter(rules)
    assert prefilter.always == [1]
    assert prefilter.candidates(Document("nothing here")) == [1]
    assert prefilter.candidates(Document("Moscow")) == [1, 2]


def test_every_required_part_must_be_present() -> None:
    prefilter = Prefilter([parse_query("China AND (Russia OR Moscow) -Taiwan").root])
    assert prefilter.candidates(Document("China alone")) == []
    assert prefilter.candidates(Document("China", "Moscow")) == [0]
    assert prefilter.candidates(Document("China Moscow Taiwan")) == [0]  # NOT: evaluated


def test_prefix_and_language_keys() -> None:
    queries = ("sanction*", "lang:en-gb AND outlets >= 1")
    prefilter = Prefilter([parse_query(q).root for q in queries])
    assert prefilter.candidates(Document("Sanctions bite")) == [0]
    assert prefilter.candidates(Document("x", language="en-GB-oxendict")) == [1]
    assert prefilter.candidates(Document("x", language="en")) == []


# --- property: prefiltered == every rule evaluated -----------------------------------

LEAF = st.sampled_from(
    [
        *WORDS,
        '"military aid"',
        '"China Russia"',
        '"arms deal"~2',
        "sanction*",
        "mil*",
        "=arms",
        "@aid",
        "gpe:China",
        "entity:Moscow",
        "lang:en",
        "title:China",
        "summary:weapons",
        "feed:wire",
        "outlets >= 2",
        "outlets >= 2 within 10m",
    ]
)
NEAR = st.builds(
    lambda a, n, b: f"{a} NEAR/{n} {b}",
    st.sampled_from(WORDS),
    st.integers(0, 3),
    st.sampled_from(WORDS),
)
QUERY = st.recursive(
    LEAF | NEAR,
    lambda inner: (
        st.builds(lambda a, b: f"({a} AND {b})", inner, inner)
        | st.builds(lambda a, b: f"({a} OR {b})", inner, inner)
        | st.builds(lambda a, b: f"({a} -({b}))", inner, inner)
    ),
    max_leaves=6,
)
TEXT = st.lists(
    st.tuples(
        st.sampled_from([*WORDS, "sanctions", "drones", "deal", "militia", "Taiwan"]),
        st.sampled_from([" ", ", ", ". "]),
    ),
    max_size=10,
).map(lambda parts: "".join(word + sep for word, sep in parts))
ENTITIES = st.lists(
    st.sampled_from(
        [
            Entity("China", "GPE", 0, 5),
            Entity("Chinese", "NORP", 0, 7, canonical="China"),
            Entity("Moscow", "GPE", 0, 6),
        ]
    ),
    max_size=2,
)
STORY = st.none() | st.builds(
    lambda times: StoryView("s", 0.0, tuple((f"o{i}", t) for i, t in enumerate(times))),
    st.lists(st.sampled_from([0.0, 300.0, 3000.0]), max_size=3),
)


def _compile(texts: list[str]) -> RuleSet:
    compiled = []
    for index, text in enumerate(texts):
        try:
            compiled.append((f"r{index}", parse_query(text, term_sets=SETS)))
        except QueryError:
            continue  # a rule that matches on absence alone: rejected, as in a config
    return RuleSet(compiled)


@settings(deadline=None, max_examples=300)
@given(
    st.lists(QUERY, min_size=1, max_size=12),
    TEXT,
    TEXT,
    ENTITIES,
    st.sampled_from([None, "en", "fr", "en-US"]),
    st.sampled_from(["", "The Wire", "Agency"]),
    STORY,
)
def test_prefiltered_result_equals_evaluating_every_rule(
    queries: list[str],
    title: str,
    summary: str,
    entities: list[Entity],
    language: str | None,
    feed: str,
    story: StoryView | None,
) -> None:
    rules = _compile(queries)
    document = Document(
        title, summary, feed=feed, language=language, entities=entities, story=story
    )
    found = rules.match_document(document)
    assert found == rules.match_every_rule(document)
    order = {"title": 0, "summary": 1, "feed": 2, "tag": 3, "entity": 4, "lang": 5}
    for match in found:  # explain: terms sorted by field and offset, each once
        keys = [(order[t.field], t.start, t.end, t.term) for t in match.terms]
        assert keys == sorted(set(keys))
        assert match.clauses and len(set(match.clauses)) == len(match.clauses)
