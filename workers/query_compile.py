"""Rule trees compiled to closures: a boolean check and an explain pass per node.

Role: :func:`compile_node` turns a query node into a :class:`Compiled` — ``holds(doc)``,
whether the node is true of a :class:`~workers.evaluate.Document`, and
``explain(doc, hits, clauses)``, which appends the terms and clauses of a node that
holds. A rule set compiles each distinct node once (``cache``, keyed by node equality:
equal nodes share one closure, hence one memo entry per document), and an item then
costs one closure call per node instead of a ``match`` dispatch per node per rule.

Cheap first: a word in the title or summary is one set lookup (``key in doc.stems``);
a phrase first checks that all its words are present, ``NEAR`` that both sides are,
and only then asks the document for spans (:meth:`~workers.evaluate.Document.hits`,
memoised per leaf and document). Spans of the terms of a rule are made only when the
rule matched (the explain pass), once per leaf and document however many rules share
it.

An ``about:`` clause embeds its text here, once per rule set (the model loads on the
first one); the item's embedding is made by the document on first use, so an item
costs one embedding only when some candidate rule asks for one.

Invariant: ``holds`` is exactly the semantics of :mod:`workers.evaluate` (every
shortcut is a necessary condition checked before the full test), and ``explain``
reports every true branch of an ``Or``, every child of an ``And``, nothing under
``Not``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers import semantic
from workers.query_ast import (
    FIELDS,
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
    Term,
    TermSet,
    render,
)

if TYPE_CHECKING:
    from workers.evaluate import Document, Hit

Holds = Callable[["Document"], bool]
ExplainInto = Callable[["Document", list["Hit"], list[str]], None]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A node's two passes; ``leaf`` is the node when it is a lone word (a :class:`Term`),
    whose hits need no sorting; ``costly`` when an ``about:`` clause (an embedding of
    the item) is under it, so that ``AND``/``OR`` try their cheap children first."""

    holds: Holds
    explain: ExplainInto
    leaf: Term | None = None
    costly: bool = False


def compile_node(node: Node, cache: dict[Node, Compiled]) -> Compiled:
    """``node`` compiled; equal nodes (in ``cache``) compile once."""
    found = cache.get(node)
    if found is None:
        found = cache[node] = _compile(node, cache)
    return found


def _compile(node: Node, cache: dict[Node, Compiled]) -> Compiled:
    match node:
        case And() | Or():
            parts = [compile_node(child, cache) for child in node.children]
            checks = [p.holds for p in sorted(parts, key=_costly)]  # stable: cheap first
            costly = any(p.costly for p in parts)
            if isinstance(node, And):
                return Compiled(_all(checks), _explain_all(parts), costly=costly)
            return Compiled(_any(checks), _explain_true(parts), costly=costly)
        case Not():
            inner = compile_node(node.child, cache)
            child = inner.holds
            return Compiled(lambda d: not child(d), _explain_nothing, costly=inner.costly)
        case Outlets():
            condition = node
            clause = render(node)
            return Compiled(lambda d: d.outlets(condition), _explain_clause(clause))
        case Term():
            return Compiled(_term(node), _explain_leaf(node), node)
        case About():
            return _about(node)
        case _:
            return Compiled(_leaf(node, cache), _explain_leaf(node))


def _term(node: Term) -> Holds:
    key, fields = node.key, node.fields
    if node.mode == "prefix":
        return lambda d: d.has_prefix(fields, key)
    if fields == FIELDS:
        if node.mode == "exact":
            return lambda d: key in d.forms
        return lambda d: key in d.stems
    if node.mode == "exact":
        return lambda d: key in d.forms_in(fields)
    return lambda d: key in d.stems_in(fields)


def _about(node: About) -> Compiled:
    """The similarity test, and a clause that says the similarity (``similarity=0.63``)."""
    vector = semantic.embed_one(node.text)
    threshold = semantic.DEFAULT_THRESHOLD if node.threshold is None else node.threshold
    clause = render(node)

    def explain(d: Document, hits: list[Hit], clauses: list[str]) -> None:
        similarity = d.similarity(vector, noted=True)
        clauses.append(f"{clause} similarity={similarity:.2f}")

    return Compiled(lambda d: d.similarity(vector) >= threshold, explain, costly=True)


def _costly(part: Compiled) -> bool:
    return part.costly


def _leaf(node: Node, cache: dict[Node, Compiled]) -> Holds:
    """The check of a leaf other than a word: a cheap necessary condition, then spans."""
    leaf = node
    match node:
        case Phrase():
            keys, fields = frozenset(node.keys), node.fields
            if node.exact:
                return lambda d: keys <= d.forms_in(fields) and bool(d.hits(leaf))
            return lambda d: keys <= d.stems_in(fields) and bool(d.hits(leaf))
        case TermSet():
            if all(member.fields == node.fields for member in node.members):
                return _any([compile_node(member, cache).holds for member in node.members])
            return lambda d: bool(d.hits(leaf))
        case Near():
            left = compile_node(node.left, cache).holds
            right = compile_node(node.right, cache).holds
            return lambda d: left(d) and right(d) and bool(d.hits(leaf))
        case EntityRef():
            key = node.key
            return lambda d: key in d.entities and bool(d.hits(leaf))
        case Lang():
            code = node.code
            return lambda d: d.has_language(code)
    return lambda d: bool(d.hits(leaf))  # pragma: no cover - every leaf is handled


def _all(checks: list[Holds]) -> Holds:
    if len(checks) == 2:
        first, second = checks
        return lambda d: first(d) and second(d)
    if len(checks) == 3:
        first, second, third = checks
        return lambda d: first(d) and second(d) and third(d)

    def holds(d: Document) -> bool:
        for check in checks:  # noqa: SIM110 - a loop skips the generator's frames
            if not check(d):
                return False
        return True

    return holds


def _any(checks: list[Holds]) -> Holds:
    if len(checks) == 2:
        first, second = checks
        return lambda d: first(d) or second(d)

    def holds(d: Document) -> bool:
        for check in checks:  # noqa: SIM110 - a loop skips the generator's frames
            if check(d):
                return True
        return False

    return holds


def _explain_all(parts: list[Compiled]) -> ExplainInto:
    explains = [part.explain for part in parts]

    def explain(d: Document, hits: list[Hit], clauses: list[str]) -> None:
        for each in explains:
            each(d, hits, clauses)

    return explain


def _explain_true(parts: list[Compiled]) -> ExplainInto:
    pairs = [(part.holds, part.explain) for part in parts]

    def explain(d: Document, hits: list[Hit], clauses: list[str]) -> None:
        for holds, each in pairs:
            if holds(d):
                each(d, hits, clauses)

    return explain


def _explain_nothing(d: Document, hits: list[Hit], clauses: list[str]) -> None:
    return None


def _explain_clause(clause: str) -> ExplainInto:
    def explain(d: Document, hits: list[Hit], clauses: list[str]) -> None:
        clauses.append(clause)

    return explain


def _explain_leaf(node: Node) -> ExplainInto:
    clause = render(node)

    def explain(d: Document, hits: list[Hit], clauses: list[str]) -> None:
        hits.extend(d.hits(node))
        clauses.append(clause)

    return explain
