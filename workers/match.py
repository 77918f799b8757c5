"""Rule matching: compiled watch rules evaluated against an item's title and summary.

Role: the pure core of the ``match`` stage. :func:`compile_rules` parses every rule's
query once (before rq forks its work-horses); :meth:`RuleSet.match` takes an
:class:`~monitor.items.Item` and returns one :class:`RuleMatch` per matching rule,
saying *why*: the positive terms that satisfied the query, with field, character
span and the exact text seen. No I/O, no logging, no global state but a stem cache.

Semantics (the words themselves are defined in :mod:`workers.query`):

- Each field (``title``, ``summary``) is tokenized once per item, not once per rule;
  a term matches a token with the same key (case-folded Snowball stem), so whole
  words only: ``Russia`` does not match ``Russian``, ``weapon`` matches ``weapons``.
- A phrase matches consecutive tokens inside one field. Hyphens, apostrophes and
  quotes between them do not matter (``"pro-Russian"`` matches ``pro Russian``), but
  a clause or sentence break does: ``"military aid"`` does not match ``the military.
  Aid groups`` (see :class:`~workers.query.Token`).
- ``Not`` is true when its child is false and contributes no terms.
- The reported terms are those of the branches that were true: every true branch of
  an ``Or``, every child of an ``And``; all occurrences of each, sorted by field
  (title first) and offset, without duplicates. Every match reports at least one
  term (queries that match on absence alone are rejected by the parser), and for
  every term ``text == <field text>[start:end]``.

Exceptions: ``ValueError`` > :class:`~workers.query.QueryError` (one query) and
:class:`RuleSetError` (every bad rule of a rule list, in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.config import RuleConfig
from monitor.items import Item
from workers.model import Entity, MatchedTerm, StoryView
from workers.query import (
    FIELDS,
    And,
    Node,
    Not,
    Or,
    Phrase,
    Query,
    QueryError,
    Term,
    Token,
    parse_query,
    tokenize,
)

__all__ = [
    "RuleMatch",
    "RuleSet",
    "RuleSetError",
    "check_queries",
    "compile_rules",
    "match_text",
]


class RuleSetError(ValueError):
    """Some rules have bad queries; ``errors`` holds ``(rule index, QueryError)`` pairs."""

    def __init__(self, errors: Sequence[tuple[int, QueryError]]) -> None:
        self.errors = tuple(errors)
        lines = [f"rules.{index}.query: {error}" for index, error in self.errors]
        noun = "rule has an invalid query" if len(lines) == 1 else "rules have invalid queries"
        super().__init__(f"{len(lines)} {noun}:\n" + "\n".join(lines))


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One rule that matched one item, and the terms that made it match."""

    rule_id: str
    query: str
    terms: tuple[MatchedTerm, ...]
    clauses: tuple[str, ...] = ()  # the query clauses that were satisfied, as written
    similarity: float | None = None  # of a semantic clause, when the rule has one


@dataclass(frozen=True, slots=True)
class _Field:
    """One field of one item, tokenized, with an index from key to token positions."""

    name: str
    text: str
    tokens: tuple[Token, ...]
    positions: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, name: str, text: str) -> _Field:
        tokens = tuple(tokenize(text))
        positions: dict[str, list[int]] = {}
        for index, token in enumerate(tokens):
            positions.setdefault(token.key, []).append(index)
        return cls(name, text, tokens, {key: tuple(found) for key, found in positions.items()})

    def hits(self, node: Term | Phrase) -> list[MatchedTerm]:
        keys, breaks = ((node.key,), ()) if isinstance(node, Term) else (node.keys, node.breaks)
        found = []
        for first in self.positions.get(keys[0], ()):
            last = first + len(keys) - 1
            if last >= len(self.tokens):
                break
            if all(
                self.tokens[first + i].key == keys[i]
                and self.tokens[first + i].broken == (i in breaks)
                for i in range(1, len(keys))
            ):
                start, end = self.tokens[first].start, self.tokens[last].end
                found.append(MatchedTerm(node.text, self.name, start, end, self.text[start:end]))
        return found


class _Document:
    """The tokenized fields of one item, shared by every rule evaluated against it."""

    def __init__(self, title: str, summary: str) -> None:
        self.fields = {"title": _Field.of("title", title), "summary": _Field.of("summary", summary)}

    def evaluate(self, query: Query) -> tuple[MatchedTerm, ...] | None:
        terms = self._eval(query.root)
        if terms is None:
            return None
        order = {name: rank for rank, name in enumerate(FIELDS)}
        unique = set(terms)
        return tuple(sorted(unique, key=lambda t: (order[t.field], t.start, t.end, t.term)))

    def _eval(self, node: Node) -> list[MatchedTerm] | None:
        """The terms that satisfy ``node`` (possibly none, under ``Not``), or ``None``."""
        match node:
            case Term() | Phrase():
                hits = [hit for name in node.fields for hit in self.fields[name].hits(node)]
                return hits or None
            case Not():
                return [] if self._eval(node.child) is None else None
            case And():
                terms: list[MatchedTerm] = []
                for child in node.children:
                    found = self._eval(child)
                    if found is None:
                        return None
                    terms.extend(found)
                return terms
            case Or():
                results = [self._eval(child) for child in node.children]
                true = [found for found in results if found is not None]
                return [term for found in true for term in found] if true else None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Compiled rules, in config order; build with :func:`compile_rules`."""

    rules: tuple[tuple[str, Query], ...]

    def __len__(self) -> int:
        return len(self.rules)

    def match(
        self,
        item: Item,
        entities: Sequence[Entity] = (),
        story: StoryView | None = None,
    ) -> list[RuleMatch]:
        """Every rule matching ``item``, in rule order; the item is tokenized once.

        ``entities`` are the item's (for entity fields) and ``story`` the story it
        joined (for story conditions); neither is used yet.
        """
        return self.match_fields(item.title, item.summary)

    def match_fields(self, title: str, summary: str = "") -> list[RuleMatch]:
        """Like :meth:`match`, for a title and summary that are not an :class:`Item`."""
        document = _Document(title, summary)
        matches = []
        for rule_id, query in self.rules:
            terms = document.evaluate(query)
            if terms is not None:
                matches.append(RuleMatch(rule_id, query.text, terms))
        return matches


def compile_rules(rules: Sequence[RuleConfig]) -> RuleSet:
    """Parse every rule's query; raise :class:`RuleSetError` listing every bad one.

    Disabled rules are parsed too (a bad query is a config error either way) but are
    left out of the :class:`RuleSet`.
    """
    compiled: list[tuple[str, Query]] = []
    errors: list[tuple[int, QueryError]] = []
    for index, rule in enumerate(rules):
        try:
            query = parse_query(rule.query, rule.id)
        except QueryError as e:
            errors.append((index, e))
            continue
        if rule.enabled:
            compiled.append((rule.id, query))
    if errors:
        raise RuleSetError(errors)
    return RuleSet(tuple(compiled))


def check_queries(rules: Sequence[RuleConfig]) -> list[tuple[int, str]]:
    """``(rule index, message)`` for every rule whose query does not parse (for ``check``)."""
    try:
        compile_rules(rules)
    except RuleSetError as e:
        return [(index, str(error)) for index, error in e.errors]
    return []


def match_text(query: Query, title: str, summary: str = "") -> tuple[MatchedTerm, ...] | None:
    """Dry run of one query: the matched terms (never empty), or ``None`` for no match."""
    return _Document(title, summary).evaluate(query)
