"""The rule-query tree: frozen nodes, their canonical text, and the error type.

Role: the values :mod:`workers.query_parse` builds and :mod:`workers.match` evaluates.
Leaves (see ``docs/rules.md`` for the language):

- text leaves, matched in ``fields`` (``title``/``summary`` by default, or one of
  ``feed``/``tag``): :class:`Term` (``mode`` ``stem``, ``exact`` or ``prefix``),
  :class:`Phrase` (``slop`` for ``"a b"~n``), :class:`TermSet` (``@name``), and
  :class:`Near` (``a NEAR/n b``) over them;
- item and story conditions: :class:`EntityRef`, :class:`Lang`, :class:`Outlets`;
- :class:`About` (``about:"text"~0.55``): the item's meaning is close to ``text``.

Invariants: nodes are frozen and hashable; ``position`` (offset into the query text) is
excluded from equality, so structurally equal queries compare equal; :func:`render`
gives text that parses back to an equal tree (given the same term sets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FIELDS: tuple[str, ...] = ("title", "summary")  # where a bare word is looked for
TEXT_FIELDS: tuple[str, ...] = ("title", "summary", "feed", "tag")


class QueryError(ValueError):
    """A rule query that cannot be used; ``str()`` is the full, user-facing message."""

    def __init__(
        self, reason: str, *, position: int, query: str, rule_id: str | None = None
    ) -> None:
        self.reason = reason
        self.position = position
        self.query = query
        self.rule_id = rule_id
        prefix = f"rule {rule_id}: " if rule_id else ""
        super().__init__(f"{prefix}{reason}")


@dataclass(frozen=True, slots=True)
class Term:
    """One word. ``key`` is compared with a token's stem key (``mode="stem"``), its
    folded form (``"exact"``, written ``=word``) or the start of its form (``"prefix"``,
    written ``word*``; ``text`` keeps the ``*``)."""

    text: str
    key: str
    fields: tuple[str, ...] = FIELDS
    position: int = field(default=0, compare=False)
    mode: str = "stem"


@dataclass(frozen=True, slots=True)
class Phrase:
    """Consecutive words (at least two) in one field; ``exact`` compares forms.

    ``breaks`` lists the indexes of the words that follow a punctuation break in the
    phrase as written (``"U.S. aid"`` has breaks (1, 2)). With ``slop`` (``"a b"~n``)
    the words may come in any order with up to ``slop`` other words among them, and
    breaks are ignored.
    """

    text: str
    keys: tuple[str, ...]
    fields: tuple[str, ...] = FIELDS
    position: int = field(default=0, compare=False)
    breaks: tuple[int, ...] = ()
    exact: bool = False
    slop: int | None = None


@dataclass(frozen=True, slots=True)
class TermSet:
    """``@name``: any of the named set's words or phrases (from ``term_sets``)."""

    name: str
    members: tuple[Term | Phrase, ...]
    fields: tuple[str, ...] = FIELDS
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Near:
    """``left NEAR/distance right``: both in one field, at most ``distance`` words
    between them, in either order. Each side is a text leaf or an ``Or`` of them."""

    left: Node
    right: Node
    distance: int
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class EntityRef:
    """An entity of the item: its canonical ``name`` (compared by ``key``, see
    :func:`workers.query_words.name_key`), with one of ``labels`` (any when empty).
    ``prefix`` is the field as written, normalised (``person``, ``entity:GPE``)."""

    text: str
    name: str
    key: str
    labels: tuple[str, ...]
    prefix: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Lang:
    """``lang:en``: the item's language is ``code`` or a variant of it (``en-GB``)."""

    code: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Outlets:
    """``outlets >= 3 within 60m``: how many outlets carried the story (within
    ``window`` seconds of its first sighting, when given) compared with ``count``."""

    op: str
    count: int
    window: float | None = None
    window_text: str = ""
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class About:
    """``about:"text"~0.55``: the embedding of the item's title and summary has a cosine
    similarity of at least ``threshold`` with that of ``text`` (``None``: the default,
    :data:`workers.semantic.DEFAULT_THRESHOLD`)."""

    text: str
    threshold: float | None = None
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    position: int = field(default=0, compare=False)


Node = Term | Phrase | TermSet | Near | EntityRef | Lang | Outlets | About | Not | And | Or
TEXT_LEAVES = (Term, Phrase, TermSet)


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed rule query: the original ``text`` and its tree."""

    text: str
    root: Node
    rule_id: str | None = None

    def __str__(self) -> str:
        return render(self.root)


def render(node: Node) -> str:
    """A canonical, fully parenthesised text of ``node`` (it parses back to ``node``)."""
    match node:
        case Term() | Phrase() | TermSet():
            text = written(node)
            return text if node.fields == FIELDS else f"{node.fields[0]}:{text}"
        case Near():
            left, right = _operand(node.left), _operand(node.right)
            return f"{left} NEAR/{node.distance} {right}"
        case EntityRef():
            return f"{node.prefix}:{_word(node.text)}"
        case Lang():
            return f"lang:{node.code}"
        case About():
            threshold = f"~{node.threshold:g}" if node.threshold is not None else ""
            return f"about:{_quote(node.text)}{threshold}"
        case Outlets():
            within = f" within {node.window_text}" if node.window is not None else ""
            return f"outlets {node.op} {node.count}{within}"
        case Not():
            child = node.child
            return f"NOT {f'({render(child)})' if isinstance(child, Near) else _operand(child)}"
        case And() | Or():
            glue = " AND " if isinstance(node, And) else " OR "
            return glue.join(_operand(child) for child in node.children)


def written(node: Term | Phrase | TermSet) -> str:
    """A text leaf as written in the query, without its field: ``=aids``, ``"a b"~3``."""
    match node:
        case TermSet():
            return f"@{node.name}"
        case Term(mode="prefix"):
            return node.text
        case Term():
            return ("=" if node.mode == "exact" else "") + _word(node.text)
        case Phrase():
            slop = f"~{node.slop}" if node.slop is not None else ""
            return ("=" if node.exact else "") + _quote(node.text) + slop


def _operand(node: Node) -> str:
    return f"({render(node)})" if isinstance(node, And | Or) else render(node)


_BARE_RE = re.compile(r"[^\W_]+")
OPERATORS = ("AND", "OR", "NOT", "NEAR")


def _word(text: str) -> str:
    bare = _BARE_RE.fullmatch(text) and text.upper() not in OPERATORS
    return text if bare else _quote(text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
