"""Rule matching: boolean logic, phrases, whole words, plurals, spans, rule sets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.config import RuleConfig
from monitor.items import Item
from workers.match import (
    RuleMatch,
    RuleSet,
    RuleSetError,
    check_queries,
    compile_rules,
    match_text,
)
from workers.model import MatchedTerm
from workers.query import QueryError, parse_query, tokenize

DESIGN_QUERY = (
    'China AND ("military aid" OR "military assistance" OR weapons) AND (Russia OR Moscow)'
)


def matches(query: str, title: str, summary: str = "") -> bool:
    return match_text(parse_query(query), title, summary) is not None


def seen(query: str, title: str, summary: str = "") -> list[tuple[str, str, str]]:
    """(term, field, text) of every matched term."""
    terms = match_text(parse_query(query), title, summary) or ()
    return [(term.term, term.field, term.text) for term in terms]


def rule(rule_id: str, query: str, *, enabled: bool = True) -> RuleConfig:
    return RuleConfig(id=rule_id, query=query, channels=["log"], enabled=enabled)


def item(title: str, summary: str = "") -> Item:
    return Item(key="k", feed_url="file:x", feed_name="x", url="u", title=title, summary=summary)


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("China AND Russia", "China and Russia", True),
        ("China AND Russia", "China only", False),
        ("China Russia", "Russia, then China", True),  # adjacency is AND, order free
        ("China OR Russia", "only Russia here", True),
        ("China OR Russia", "only Moscow here", False),
        ("China -Taiwan", "China and Taiwan", False),
        ("China NOT Taiwan", "China alone", True),
        ("China AND (Russia OR Moscow)", "China, Moscow", True),
        ("China AND (Russia OR Moscow)", "China, Kyiv", False),
        ("(China AND Russia) OR Iran", "Iran", True),
        ("China AND (Russia OR NOT Iran)", "China", True),
        ("China AND (Russia OR NOT Iran)", "China Iran", False),
        ("CHINA", "china", True),  # case-insensitive
        ("china", "CHINA", True),
        ("weapon", "shipments of weapons", True),  # singular/plural alike
        ("weapons", "a weapon", True),
        ("aid", "aids", True),
        ("Russia", "Russian officials", False),  # whole words, and stems keep them apart
        ("Russian", "Russia", False),
        ("China", "Chinese", False),
        ("aid", "aided", True),
        ("aid", "aides", True),  # Snowball: aides -> aid (documented conflation)
        ("aid", "paid", False),  # never inside a word
        ("Russia", "Russia’s invasion", True),
        ("Russia", "Russia's invasion", True),
        ("Russian", "pro-Russian groups", True),  # hyphens split words
        ('"pro-Russian"', "pro Russian groups", True),
        ("pro-Russian", "pro-Russian groups", True),
        ('"military aid"', "military aid", True),
        ('"military aid"', "MILITARY AIDS", True),
        ('"military aid"', "military and economic aid", False),  # consecutive only
        ('"military aid"', "aid, military", False),  # in order
        ('"military aid"', "the military. Aid groups", False),  # not across a break
        ('"military aid"', "military, aid", False),
        ('"military aid"', "“military” aid", True),  # quotes are no break
        ('"U.S. aid"', "more U.S. aid", True),  # the same break as the query's
        ('"U.S. aid"', "U S aid", False),
        ('"military assistance"', "militaries assisting", True),  # stems, both words
        ("Zurich", "Zürich", True),  # accents removed
    ],
)
def test_evaluation(query: str, text: str, expected: bool) -> None:
    assert matches(query, text) is expected
    assert matches(query, "", text) is expected  # summary alike


def test_phrase_never_spans_two_fields() -> None:
    assert not matches('"military aid"', "more military", "aid for Kyiv")


def test_fields_restrict_where_a_term_matches() -> None:
    assert matches("title:China", "China", "")
    assert not matches("title:China", "news", "China")
    assert matches("summary:China", "news", "China")
    assert matches("title:China AND summary:Russia", "China", "Russia")
    assert not matches("title:China -summary:Taiwan", "China", "Taiwan")
    assert matches("title:China -summary:Taiwan", "China Taiwan", "")


def test_matched_terms_say_why() -> None:
    assert seen(DESIGN_QUERY, "Russia asks China for weapons", "Moscow’s military aid request") == [
        ("Russia", "title", "Russia"),
        ("China", "title", "China"),
        ("weapons", "title", "weapons"),
        ("Moscow", "summary", "Moscow"),
        ("military aid", "summary", "military aid"),
    ]


def test_matched_terms_report_inflected_text_and_every_occurrence() -> None:
    assert seen("weapons", "A weapon, then WEAPONS") == [
        ("weapons", "title", "weapon"),
        ("weapons", "title", "WEAPONS"),
    ]


def test_negated_and_false_branches_report_nothing() -> None:
    assert seen("China AND (Russia OR Iran) -Taiwan", "China Russia") == [
        ("China", "title", "China"),
        ("Russia", "title", "Russia"),
    ]


def test_a_term_in_two_branches_is_reported_once() -> None:
    assert seen("China OR (China AND Russia)", "China Russia") == [
        ("China", "title", "China"),
        ("Russia", "title", "Russia"),
    ]


def test_spans_index_the_field_text() -> None:
    title = "US says Russia’s request to China included weapons"
    summary = "Beijing denied any “military assistance” to Moscow."
    terms = match_text(parse_query(DESIGN_QUERY), title, summary)
    assert terms is not None
    for term in terms:
        source = title if term.field == "title" else summary
        assert source[term.start : term.end] == term.text
    assert MatchedTerm("Russia", "title", 8, 14, "Russia") in terms
    assert MatchedTerm("military assistance", "summary", 20, 39, "military assistance") in terms


# --- properties ----------------------------------------------------------------------

VOCAB = ["China", "china", "Russia", "Russian", "Moscow", "weapon", "weapons", "aid", "military"]
TEXTS = st.lists(
    st.tuples(st.sampled_from(VOCAB), st.sampled_from([" ", ", ", "-", "’s ", ". "])),
    max_size=12,
).map(lambda parts: "".join(word + sep for word, sep in parts))
TERMS = st.sampled_from(["China", "Russia", "weapons", "aid", '"military aid"', '"China Russia"'])


@given(TERMS, TERMS, TEXTS, TEXTS)
def test_or_matches_iff_either_matches(a: str, b: str, title: str, summary: str) -> None:
    either = matches(f"{a} OR {b}", title, summary)
    assert either == (matches(a, title, summary) or matches(b, title, summary))


@given(TERMS, TERMS, TEXTS, TEXTS)
def test_and_not_inverts(a: str, b: str, title: str, summary: str) -> None:
    assert matches(f"{a} AND NOT {b}", title, summary) == (
        matches(a, title, summary) and not matches(b, title, summary)
    )


@given(TERMS, TEXTS)
def test_case_does_not_matter(term: str, text: str) -> None:
    assert matches(term, text) == matches(term, text.upper()) == matches(term, text.lower())


@given(TEXTS, TEXTS)
def test_every_reported_span_is_the_text_seen(title: str, summary: str) -> None:
    query = parse_query('China OR Russia OR weapons OR "military aid"')
    for term in match_text(query, title, summary) or ():
        source = title if term.field == "title" else summary
        assert source[term.start : term.end] == term.text
        keys = tuple(token.key for token in tokenize(term.text))
        assert keys in {("china",), ("russia",), ("weapon",), ("militari", "aid")}


# --- rule sets -----------------------------------------------------------------------


def test_rule_set_matches_items_in_rule_order() -> None:
    rules = compile_rules(
        [
            rule("china-military-aid", DESIGN_QUERY),
            rule("moscow", "Moscow"),
            rule("taiwan", "Taiwan"),
            rule("off", "Moscow", enabled=False),
        ]
    )
    assert isinstance(rules, RuleSet)
    assert len(rules) == 3
    found = rules.match(item("Moscow asks China for weapons, says Russia"))
    assert [m.rule_id for m in found] == ["china-military-aid", "moscow"]
    assert found[1] == RuleMatch(
        "moscow", "Moscow", (MatchedTerm("Moscow", "title", 0, 6, "Moscow"),), ("Moscow",)
    )
    assert found[0].query == DESIGN_QUERY
    assert rules.match(item("Nothing to see")) == []
    assert rules.match_fields("Taiwan") == [
        RuleMatch(
            "taiwan", "Taiwan", (MatchedTerm("Taiwan", "title", 0, 6, "Taiwan"),), ("Taiwan",)
        )
    ]


def test_compile_rules_lists_every_bad_rule() -> None:
    bad = [
        rule("good", "China"),
        rule("dangling", "China AND"),
        rule("negative", "NOT Taiwan", enabled=False),  # disabled rules are checked too
        rule("paren", "China AND aid()"),
    ]
    with pytest.raises(RuleSetError) as caught:
        compile_rules(bad)
    error = caught.value
    assert [index for index, _ in error.errors] == [1, 2, 3]
    assert all(isinstance(e, QueryError) for _, e in error.errors)
    assert [e.rule_id for _, e in error.errors] == ["dangling", "negative", "paren"]
    message = str(error)
    assert message.startswith("3 rules have invalid queries:\n")
    assert "rules.3.query: rule paren: syntax error at position 14: unexpected ')'" in message


def test_check_queries_for_the_cli() -> None:
    assert check_queries([rule("ok", DESIGN_QUERY)]) == []
    problems = check_queries([rule("ok", "China"), rule("bad", '"military aid')])
    assert problems == [
        (1, "rule bad: syntax error at position 0: unclosed quote, expected a closing '\"'")
    ]


def test_empty_rule_set() -> None:
    assert compile_rules([]).match(item("anything")) == []
