"""The rule language beyond words: wildcards, exact, proximity, fields, entities, term
sets, story conditions, lemmas, explain output, and their errors."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.config import RuleConfig
from monitor.items import Item
from workers.match import RuleSetError, check_queries, compile_rules, explain_text
from workers.model import Entity, MatchedTerm, StoryView
from workers.query import QueryError, parse_query, render, word_key

SETS = {"aid": ["aid", "assistance", "weapons", "military aid", "drone*"], "empty_ok": ["x"]}


def hit(
    query: str,
    title: str,
    summary: str = "",
    *,
    entities: tuple[Entity, ...] = (),
    story: StoryView | None = None,
) -> bool:
    parsed = parse_query(query, term_sets=SETS)
    return explain_text(parsed, title, summary, entities=entities, story=story) is not None


def rule(rule_id: str, query: str) -> RuleConfig:
    return RuleConfig(id=rule_id, query=query, channels=["log"])


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("sanction*", "new sanctions on Iran", True),
        ("sanction*", "the sanctioning body", True),
        ("sanction*", "Sanction", True),
        ("sanction*", "unsanctioned", False),  # a prefix of the word, not any substring
        ("=aids", "aids for Kyiv", True),  # exact: case-folded, not stemmed
        ("=aids", "AIDS", True),
        ("=aids", "aid for Kyiv", False),
        ("aids", "aid for Kyiv", True),  # the default is inflection-insensitive
        ('="military aids"', "military aid", False),
        ('="military aids"', "Military Aids", True),
        ("seek", "Russia sought weapons", True),  # lemma table: irregular verbs
        ("sought", "Russia seeks weapons", True),
        ("buy", "Moscow bought drones", True),
        ("child", "children killed", True),
        ("crisis", "two crises", True),
        ("see", "a saw and a hammer", False),  # saw is a word of its own
        ("bear", "born in Kyiv", False),
        ("weapon", "weapons", True),
        ("Putin NEAR/3 Xi", "Putin met Xi", True),
        ("Putin NEAR/3 Xi", "Xi welcomed his friend Putin", True),  # either order
        ("Putin NEAR/1 Xi", "Xi welcomed his friend Putin", False),
        ("Putin NEAR/0 Xi", "Putin, Xi", True),  # breaks do not matter to NEAR
        ("(Putin OR Kremlin) NEAR/2 @aid", "Kremlin seeks drones", True),
        ("title:Putin NEAR/2 title:Xi", "", False),
        ('"arms deal"~2', "a deal on arms", True),  # any order, up to 2 words among
        ('"arms deal"~0', "deal arms", True),
        ('"arms deal"~1', "arms for a deal", False),
        ('"arms deal"', "deal arms", False),
        ("@aid", "more assistance", True),
        ("@aid", "military aid", True),
        ("@aid", "drone strikes", True),
        ("@aid", "tanks", False),
        ("China AND @aid", "China sends weapons", True),
    ],
)
def test_text_syntax(query: str, text: str, expected: bool) -> None:
    assert hit(query, text) is expected


def test_feed_tag_and_lang_fields() -> None:
    rules = compile_rules(
        [
            rule("feed", "feed:Reuters AND China"),
            rule("tag", 'tag:"world news" AND China'),
            rule("lang", "lang:en AND China"),
            rule("lang-variant", "lang:en-gb AND China"),
            rule("fr", "lang:fr AND China"),
        ]
    )
    item = Item(
        key="k",
        feed_url="https://x.example/rss",
        feed_name="Reuters World",
        url="u",
        title="China",
        tags=("Politics", "World News"),
        language="en-GB",
    )
    found = {m.rule_id: m for m in rules.match(item)}
    assert sorted(found) == ["feed", "lang", "lang-variant", "tag"]
    assert MatchedTerm("Reuters", "feed", 0, 7, "Reuters") in found["feed"].terms
    assert MatchedTerm("world news", "tag", 10, 20, "World News") in found["tag"].terms
    assert MatchedTerm("lang:en", "lang", 0, 5, "en-gb") in found["lang"].terms


ENTITIES = (
    Entity("Xi", "PERSON", 0, 2, canonical="Xi Jinping"),
    Entity("Moscow", "GPE", 11, 17),
    Entity("Chinese", "NORP", 22, 29, canonical="China"),
    Entity("Wagner", "ORG", 30, 36),
)
TEXT = "Xi arrives Moscow for Chinese Wagner"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('person:"Xi Jinping"', True),
        ('person:"xi jinping"', True),  # names compare case-insensitively
        ("person:Moscow", False),  # right name, wrong label
        ("entity:Moscow", True),  # any label
        ("entity:GPE:Moscow", True),
        ("entity:gpe:Moscow", True),
        ("gpe:Moscow", True),
        ("place:Moscow", True),
        ("loc:Moscow", False),
        ("org:Wagner", True),
        ("norp:China", True),
        ("gpe:China", True),  # a NORP entity whose canonical name is a country
        ("loc:China", False),
        ('person:"Xi Jinping" AND gpe:Moscow', True),
        ('person:("Wang Yi" OR "Xi Jinping")', True),
    ],
)
def test_entity_fields(query: str, expected: bool) -> None:
    assert hit(query, TEXT, entities=ENTITIES) is expected


def test_entity_names_in_queries_are_canonicalised() -> None:
    root = parse_query('gpe:"U.S."').root
    assert root.name == "United States"  # type: ignore[union-attr]
    us = (Entity("U.S.", "GPE", 0, 4, canonical="United States"),)
    assert hit('gpe:"U.S."', "U.S. aid", entities=us)


def test_watched_entities() -> None:
    rules = compile_rules(
        [
            rule("a", 'person:"Xi Jinping" AND (gpe:Russia OR place:Kyiv) AND entity:Nobody'),
            rule("b", 'org:Wagner OR entity:PERSON:"Xi Jinping"'),
        ]
    )
    assert rules.watched_entities() == [
        ("PERSON", "Xi Jinping"),
        ("GPE", "Russia"),
        ("GPE", "Kyiv"),
        ("ORG", "Wagner"),
    ]


STORY = StoryView("s", 1000.0, (("a", 1000.0), ("b", 1500.0), ("c", 4000.0), ("d", 9000.0)))


@pytest.mark.parametrize(
    ("query", "story", "expected"),
    [
        ("China AND outlets >= 3 within 60m", STORY, True),
        ("China AND outlets >= 4 within 60m", STORY, False),
        ("China AND outlets >= 4", STORY, True),
        ("China AND outlets > 4", STORY, False),
        ("China AND outlets = 2 within 10m", STORY, True),
        ("China AND outlets < 2", None, True),  # no story: one outlet, seen now
        ("China AND outlets >= 2", None, False),
        ("outlets >= 3 within 1h", STORY, True),  # a non-text rule alone is fine
        ("China AND outlets >= 3 within 2d", STORY, True),
        ("China AND outlets >= 3 within 30s", STORY, False),
    ],
)
def test_story_conditions(query: str, story: StoryView | None, expected: bool) -> None:
    assert hit(query, "China", story=story) is expected


def test_explain_carries_clauses_and_spans() -> None:
    query = parse_query(
        'China AND (@aid OR "military aid") AND entity:GPE:Moscow AND outlets >= 3 within 60m '
        "AND sanction* -Taiwan",
        term_sets=SETS,
    )
    title = "China weighs sanctions"
    summary = "Moscow asked for drones and military aid"
    moscow = (Entity("Moscow", "GPE", len(title) + 1, len(title) + 7),)
    explain = explain_text(query, title, summary, entities=moscow, story=STORY)
    assert explain is not None
    assert explain.clauses == (
        "China",
        "@aid",
        '"military aid"',
        "entity:GPE:Moscow",
        "outlets >= 3 within 60m",
        "sanction*",
    )
    assert [(t.term, t.field, t.text) for t in explain.terms] == [
        ("China", "title", "China"),
        ("sanction*", "title", "sanctions"),
        ("drone*", "summary", "drones"),
        ("military aid", "summary", "military aid"),
        ("aid", "summary", "aid"),
        ("entity:GPE:Moscow", "entity", "Moscow"),
    ]
    assert explain_text(query, title + " Taiwan", summary, entities=moscow, story=STORY) is None


def test_prefix_hits_are_reported_in_text_order() -> None:
    explain = explain_text(parse_query("sanction*"), "Sanctions, a sanction, more sanctions")
    assert explain is not None
    assert [t.start for t in explain.terms] == [0, 13, 28]


def test_near_reports_both_sides() -> None:
    explain = explain_text(parse_query("Putin NEAR/2 Xi"), "Putin and Xi; later Xi")
    assert explain is not None
    assert [(t.term, t.start) for t in explain.terms] == [("Putin", 0), ("Xi", 10)]
    assert explain.clauses == ("Putin NEAR/2 Xi",)


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("@nope", 0, "unknown term set '@nope' (known: @aid, @empty_ok)"),
        ("China AND @", 11, "expected a term set name after '@'"),
        ("a NEAR b", 2, "NEAR needs a distance"),
        ("a near/3 b", 2, "NEAR needs a distance in words and upper case"),
        ("a NEAR/3", 8, "expected a word or phrase after 'NEAR/3', found the end"),
        ("(a AND b) NEAR/3 c", 1, "NEAR joins words, phrases"),
        ("a NEAR/3 gpe:China", 13, "NEAR joins words"),
        ("a NEAR/3 b NEAR/3 c", 11, "cannot be chained"),
        ("China AND outlets >= x", 20, "expected a number after 'outlets >='"),
        ("China AND outlets >= 3 within soon", 29, "expected a duration such as 60m"),
        ("title:(outlets >= 3)", 7, "'outlets' cannot be inside field 'title'"),
        ("China AND lang:english1", 15, "expected a language code"),
        ('China AND lang:"en"', 15, "expected a language code"),
        ("entity:WHO:x", 7, "unknown entity label 'WHO'"),
        ("person:Xi*", 7, "expected a name"),
        ("person:@aid", 7, "expected a name"),
        ("about:x", 6, "expected a quoted description after 'about:'"),
        ("about:", 6, "expected a quoted description after 'about:'"),
        ('about:"a b"~3', 6, "about: takes a similarity threshold between 0 and 1"),
        ('about:"a b"~1.5', 12, "expected a similarity threshold above 0 and at most 1"),
        ('"a b"~0.5', 0, "a decimal after '~' is a similarity threshold"),
        ('title:about:"a b"', 6, "field 'about' inside field 'title'"),
        ('about:"a b" NEAR/3 c', 0, "NEAR joins words"),
        ("China AND = x", 11, "expected a word or phrase right after '='"),
        ("a > b", 2, "comparisons are only for story conditions"),
        ("person:(title:x)", 8, "field 'title' inside field 'person'"),
        ('"a b"~3^2', 0, "boosts"),
    ],
)
def test_new_syntax_errors(text: str, position: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(text, "r1", SETS)
    assert caught.value.position == position, str(caught.value)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"rule r1: syntax error at position {position}: ")


def test_a_bad_term_set_word_names_the_set() -> None:
    with pytest.raises(QueryError, match=r"in term set '@bad': term '\.\.\.' has no letters"):
        parse_query("China @bad", term_sets={"bad": ["ok", "..."]})


@pytest.mark.parametrize("member", ["w*d", "te?t", "=arm*s"])
def test_a_wildcard_inside_a_term_set_word_is_an_error_as_in_a_query(member: str) -> None:
    with pytest.raises(QueryError, match=r"in term set '@odd': only a trailing '\*'"):
        parse_query("@odd", term_sets={"odd": ["ok", member]})


def test_a_term_set_takes_prefixes_and_quoted_phrases_with_wildcard_signs() -> None:
    query = parse_query("@ok", term_sets={"ok": ["sanction*", '"what?"', "military aid"]})
    assert query is not None


def test_compile_and_check_take_term_sets() -> None:
    rules = [rule("ok", "China AND @aid"), rule("bad", "China AND @arms")]
    assert check_queries(rules[:1], SETS) == []
    problems = check_queries(rules, SETS)
    assert problems == [
        (
            1,
            "rule bad: syntax error at position 10: unknown term set '@arms' "
            "(known: @aid, @empty_ok)",
        )
    ]
    assert "known: none: add term_sets" in check_queries(rules[:1])[0][1]
    with pytest.raises(RuleSetError):
        compile_rules(rules, SETS)
    assert compile_rules(rules[:1], SETS).match_fields("China sends aid")


def test_lemmas_feed_the_word_key() -> None:
    assert word_key("sought") == word_key("seeking") == word_key("seek")
    assert word_key("women") == word_key("woman")
    assert word_key("left") != word_key("leave")


# --- the canonical text parses back to the same tree ------------------------------------

WORDS = st.sampled_from(["China", "Russia", "weapons", "aid", "sanction*", "=aids", "@aid"])
LEAVES = (
    WORDS
    | st.builds(
        lambda a, b: f'"{a} {b}"', st.sampled_from(["arms", "deal"]), WORDS.filter(str.isalpha)
    )
    | st.builds(lambda n: f'"arms deal"~{n}', st.integers(0, 5))
    | st.sampled_from(
        [
            'person:"Xi Jinping"',
            "entity:GPE:China",
            "gpe:Moscow",
            "lang:en",
            "feed:Reuters",
            "tag:world",
            "outlets >= 3 within 60m",
            "outlets > 2",
            "place:Kyiv",
            "entity:Wagner",
        ]
    )
    | st.builds(lambda a, n, b: f"{a} NEAR/{n} {b}", WORDS, st.integers(0, 9), WORDS)
)
QUERIES = st.recursive(
    LEAVES,
    lambda inner: (
        st.builds(lambda a, b: f"({a} AND {b})", inner, inner)
        | st.builds(lambda a, b: f"({a} OR {b})", inner, inner)
        | st.builds(lambda a, b: f"{a} {b}", inner, inner)
        | st.builds(lambda a: f"NOT ({a})", inner)
        | st.builds(lambda a: f"title:({a})", WORDS.filter(str.isalpha))
    ),
    max_leaves=8,
)


@settings(deadline=None)
@given(QUERIES)
def test_render_parses_back(text: str) -> None:
    try:
        query = parse_query(text, term_sets=SETS)
    except QueryError as e:
        assume("absence alone" not in str(e))
        raise
    assert parse_query(render(query.root), term_sets=SETS).root == query.root
