"""The rule query language: text in, a small frozen tree out.

Role: :func:`parse_query` turns a rule's ``query`` (and the config's ``term_sets``)
into a :class:`Query`, or raises :class:`QueryError` naming the rule, the character
offset and what was expected. The tree is defined in :mod:`workers.query_ast`, the
grammar in :mod:`workers.query_parse`, words and their keys in
:mod:`workers.query_words`; evaluation lives in :mod:`workers.match`. The whole
language, with examples, is ``docs/rules.md``. In brief::

    China AND ("military aid" OR @aid) AND (Russia OR Moscow)
    sanction* =aids title:China -Taiwan "arms deal"~3 Putin NEAR/5 Xi
    entity:GPE:China person:"Xi Jinping" feed:Reuters tag:defence lang:en
    China AND outlets >= 3 within 60m
    about:"China supplying weapons to Russia"~0.5 AND NOT Taiwan

- ``AND``, ``OR``, ``NOT``, ``NEAR/n`` are upper case. Precedence, tightest first:
  ``NOT``/``-``, ``NEAR``, ``AND``, ``OR``, then adjacency (an implicit AND):
  ``a b OR c`` is ``a AND (b OR c)``. Lower-case ``and``/``or``/``not`` are rejected
  as probable typos (quote them to search the word); ``&&``, ``||`` and ``!`` are
  rejected with a hint.
- Negation must be anchored: a query must not be satisfiable by absence alone
  (``NOT x``, ``a OR -b`` are rejected), so every match reports a satisfied clause.

Exceptions: ``ValueError`` > :class:`QueryError` (``reason``, ``position``, ``query``,
``rule_id``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workers.query_ast import (
    FIELDS,
    TEXT_FIELDS,
    About,
    And,
    EntityRef,
    Lang,
    Near,
    Node,
    Not,
    Or,
    Outlets,
    Phrase,
    Query,
    QueryError,
    Term,
    TermSet,
    render,
    written,
)
from workers.query_lex import Fail, check_brackets
from workers.query_parse import ENTITY_FIELDS, LABELS, Parser
from workers.query_words import Token, fold, name_key, tokenize, word_key

__all__ = [
    "ENTITY_FIELDS",
    "FIELDS",
    "LABELS",
    "TEXT_FIELDS",
    "About",
    "And",
    "EntityRef",
    "Lang",
    "Near",
    "Node",
    "Not",
    "Or",
    "Outlets",
    "Phrase",
    "Query",
    "QueryError",
    "Term",
    "TermSet",
    "Token",
    "fold",
    "leaves",
    "name_key",
    "parse_query",
    "render",
    "tokenize",
    "word_key",
    "written",
]


def parse_query(
    text: str,
    rule_id: str | None = None,
    term_sets: Mapping[str, Sequence[str]] | None = None,
) -> Query:
    """Parse ``text``; raise :class:`QueryError` (with ``rule_id``) when it is unusable.

    ``term_sets`` are the config's named word lists, for ``@name``.
    """
    fail = Fail(text, rule_id)
    if not text.strip():
        raise fail("empty query, expected a word or a quoted phrase", 0)
    check_brackets(text, fail)
    root = Parser(text, fail, term_sets or {}).parse()
    offender = _unanchored(root)
    if offender is not None:
        raise fail(
            f"'{render(offender)}' matches on absence alone: "
            "AND it with a word or phrase that must be present",
            offender.position,
            kind="invalid query",
        )
    return Query(text, root, rule_id)


def leaves(node: Node) -> list[Node]:
    """Every leaf under ``node`` (a :class:`Near` and a :class:`TermSet` are leaves)."""
    match node:
        case Not():
            return leaves(node.child)
        case And() | Or():
            return [leaf for child in node.children for leaf in leaves(child)]
        case _:
            return [node]


def _unanchored(node: Node) -> Node | None:
    """The sub-node that lets ``node`` match with nothing present, or ``None``."""
    match node:
        case Not():
            return node
        case And():
            anchored = any(_unanchored(child) is None for child in node.children)
            return None if anchored else node
        case Or():
            return next((o for o in map(_unanchored, node.children) if o is not None), None)
        case _:
            return None
