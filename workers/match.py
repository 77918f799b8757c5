"""Rule matching: compiled watch rules evaluated against an item, with explanations.

Role: the pure core of the ``match`` stage. :func:`compile_rules` parses every rule's
query once (before rq forks its work-horses) into one :class:`RuleSet`, whose
:class:`~workers.prefilter.Prefilter` indexes every rule by the word keys it needs;
:meth:`RuleSet.match` tokenizes an item once (:class:`~workers.evaluate.Document`),
looks its words up in the index, and evaluates only the candidate rules. Each match
says *why*: ``terms`` (field, span and text of every term that held) and ``clauses``
(the satisfied clauses as written, canonical: ``China``, ``"military aid"``,
``entity:GPE:Russia``, ``outlets >= 3 within 60m``). No I/O, no logging.

Semantics are in :mod:`workers.evaluate`; the language in ``docs/rules.md``.

Exceptions: ``ValueError`` > :class:`~workers.query.QueryError` (one query) and
:class:`RuleSetError` (every bad rule of a rule list, in order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from monitor.config import RuleConfig
from monitor.items import Item
from workers.evaluate import Document, Explain
from workers.model import Entity, MatchedTerm, StoryView
from workers.prefilter import Prefilter
from workers.query import (
    About,
    And,
    EntityRef,
    Node,
    Not,
    Or,
    Query,
    QueryError,
    leaves,
    parse_query,
    render,
)
from workers.query_compile import Compiled, compile_node

__all__ = [
    "RuleMatch",
    "RuleSet",
    "RuleSetError",
    "check_queries",
    "clause_text",
    "compile_rules",
    "document_of",
    "intern_leaves",
    "match_text",
]

TermSets = Mapping[str, Sequence[str]]


class RuleSetError(ValueError):
    """Some rules have bad queries; ``errors`` holds ``(rule index, QueryError)`` pairs."""

    def __init__(self, errors: Sequence[tuple[int, QueryError]]) -> None:
        self.errors = tuple(errors)
        lines = [f"rules.{index}.query: {error}" for index, error in self.errors]
        noun = "rule has an invalid query" if len(lines) == 1 else "rules have invalid queries"
        super().__init__(f"{len(lines)} {noun}:\n" + "\n".join(lines))


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One rule that matched one item, and the terms and clauses that made it match."""

    rule_id: str
    query: str
    terms: tuple[MatchedTerm, ...]
    clauses: tuple[str, ...] = ()  # the query clauses that were satisfied, as written
    similarity: float | None = None  # of a semantic clause, when the rule has one


def document_of(
    item: Item, entities: Sequence[Entity] = (), story: StoryView | None = None
) -> Document:
    """The :class:`Document` of an item: every field a rule can look at."""
    return Document(
        item.title,
        item.summary,
        feed=item.feed_name or item.feed_url,
        tags=item.tags,
        language=item.language,
        entities=entities,
        story=story,
    )


class RuleSet:
    """Compiled rules, in config order, behind one prefilter; build with :func:`compile_rules`."""

    __slots__ = ("_compiled", "prefilter", "rules")

    def __init__(self, rules: Sequence[tuple[str, Query]]) -> None:
        shared: dict[Node, Node] = {}
        self.rules: tuple[tuple[str, Query], ...] = tuple(
            (rule_id, replace(query, root=intern_leaves(query.root, shared)))
            for rule_id, query in rules
        )
        self.prefilter = Prefilter([query.root for _, query in self.rules])
        cache: dict[Node, Compiled] = {}
        # One compiled tree per distinct tree (rules with equal queries share it).
        self._compiled = [compile_node(root, cache) for root in self.prefilter.roots]

    def __len__(self) -> int:
        return len(self.rules)

    def match(
        self,
        item: Item,
        entities: Sequence[Entity] = (),
        story: StoryView | None = None,
    ) -> list[RuleMatch]:
        """Every rule matching ``item``, in rule order; the item is tokenized once.

        ``entities`` are the item's (offsets into ``title + "\\n" + summary``), for
        entity fields; ``story`` the story it joined, for ``outlets`` conditions.
        """
        return self.match_document(document_of(item, entities, story))

    def match_fields(self, title: str, summary: str = "") -> list[RuleMatch]:
        """Like :meth:`match`, for a title and summary that are not an :class:`Item`."""
        return self.match_document(Document(title, summary))

    def match_document(self, document: Document) -> list[RuleMatch]:
        """Every rule matching ``document``: the prefilter's candidates, evaluated."""
        return self._evaluate(document, self.prefilter.candidate_roots(document))

    def match_every_rule(self, document: Document) -> list[RuleMatch]:
        """:meth:`match_document` without the prefilter (for tests and the benchmark)."""
        return self._evaluate(document, range(len(self._compiled)))

    def _evaluate(self, document: Document, roots: Iterable[int]) -> list[RuleMatch]:
        """Check each distinct tree once; explain the ones that hold, for their rules."""
        compiled, positions = self._compiled, self.prefilter.positions
        found: list[tuple[int, Explain]] = []
        for number in roots:
            tree = compiled[number]
            if tree.holds(document):
                explain = document.explain(tree)
                found.extend((position, explain) for position in positions[number])
        found.sort(key=_first)
        rules = self.rules
        return [
            RuleMatch(
                rules[p][0], rules[p][1].text, explain.terms, explain.clauses, explain.similarity
            )
            for p, explain in found
        ]

    def watched_entities(self) -> list[tuple[str, str]]:
        """``(label, canonical name)`` of every labelled entity the rules ask for.

        For the NER gazetteer: names that rules watch should be found. A field with
        several labels (``place:``) gives its first (GPE); ``entity:Name`` with no
        label gives nothing (the gazetteer would not know what to call it).
        """
        found: dict[tuple[str, str], None] = {}
        for _, query in self.rules:
            for leaf in leaves(query.root):
                if isinstance(leaf, EntityRef) and leaf.labels:
                    found[(leaf.labels[0], leaf.name)] = None
        return list(found)


def _first(pair: tuple[int, Explain]) -> int:
    return pair[0]


def intern_leaves(node: Node, shared: dict[Node, Node]) -> Node:
    """``node`` with every leaf replaced by the first equal leaf seen across the rule set.

    Rules share words (``China`` in hundreds of rules): with one object per distinct
    leaf, a :class:`~workers.evaluate.Document` evaluates each leaf once per item.
    """
    match node:
        case Not():
            return Not(intern_leaves(node.child, shared), node.position)
        case And() | Or():
            children = tuple(intern_leaves(child, shared) for child in node.children)
            return type(node)(children, node.position)
        case _:
            return shared.setdefault(node, node)


def compile_rules(rules: Sequence[RuleConfig], term_sets: TermSets | None = None) -> RuleSet:
    """Parse every rule's query; raise :class:`RuleSetError` listing every bad one.

    ``term_sets`` (``Config.term_sets``) resolve ``@name``. Disabled rules are parsed
    too (a bad query is a config error either way) but left out of the :class:`RuleSet`.
    """
    compiled: list[tuple[str, Query]] = []
    errors: list[tuple[int, QueryError]] = []
    for index, rule in enumerate(rules):
        try:
            query = parse_query(rule.query, rule.id, term_sets)
        except QueryError as e:
            errors.append((index, e))
            continue
        if rule.enabled:
            compiled.append((rule.id, query))
    if errors:
        raise RuleSetError(errors)
    return RuleSet(compiled)


def check_queries(
    rules: Sequence[RuleConfig], term_sets: TermSets | None = None
) -> list[tuple[int, str]]:
    """``(rule index, message)`` for every rule whose query does not parse (for ``check``)."""
    try:
        compile_rules(rules, term_sets)
    except RuleSetError as e:
        return [(index, str(error)) for index, error in e.errors]
    return []


def clause_text(node: Node, document: Document) -> str:
    """A clause as written; an ``about:`` clause with the item's similarity to it, so
    that a clause that did not hold still says how close the item came."""
    if isinstance(node, About):
        from workers.semantic import embed_one

        return f"{render(node)} similarity={document.similarity(embed_one(node.text)):.2f}"
    return render(node)


def match_text(
    query: Query,
    title: str,
    summary: str = "",
    *,
    entities: Sequence[Entity] = (),
    story: StoryView | None = None,
) -> tuple[MatchedTerm, ...] | None:
    """Dry run of one query: the matched terms, or ``None`` for no match."""
    explain = explain_text(query, title, summary, entities=entities, story=story)
    return None if explain is None else explain.terms


def explain_text(
    query: Query,
    title: str,
    summary: str = "",
    *,
    entities: Sequence[Entity] = (),
    story: StoryView | None = None,
) -> Explain | None:
    """Dry run of one query: its terms and clauses, or ``None`` for no match."""
    return Document(title, summary, entities=entities, story=story).evaluate(query)
