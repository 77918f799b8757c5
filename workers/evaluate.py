"""One item, ready for many rules: its fields tokenized once, and query evaluation.

Role: the inner loop of the ``match`` stage. A :class:`Document` holds an item's text
fields (``title``, ``summary``, ``feed`` = the feed's name, ``tag`` = its tags joined
by ``"; "``), its entities (by name), its language and its story; :meth:`Document.evaluate`
answers one query with an :class:`Explain` (the terms and clauses that satisfied it)
or ``None``. Pure: no I/O, no state beyond the document.

Semantics (words and keys are defined in :mod:`workers.query_words`):

- A :class:`~workers.query_ast.Term` matches a token by stem key, folded form
  (``exact``) or form prefix (``prefix``); a phrase matches consecutive tokens of one
  field and not across a clause or sentence break; ``"a b"~n`` matches its words in
  any order with at most ``n`` other words among them; ``a NEAR/n b`` matches when an
  occurrence of each lies in one field with at most ``n`` words between them.
- An :class:`~workers.query_ast.EntityRef` matches an entity whose canonical name has
  the same :func:`~workers.query_words.name_key` and one of its labels; a GPE query
  also takes a NORP entity whose canonical name is a country (``Chinese`` -> China).
- ``about:"text"~t`` holds when the cosine similarity of the embeddings of the item's
  ``title + "\n" + summary`` and of ``text`` is at least ``t`` (:mod:`workers.semantic`);
  the explanation reports the highest similarity of the ``about:`` clauses that held.
- ``outlets OP n within W`` counts the story's outlets first seen at most ``W``
  after the story was (all of them without ``within``); with no story, one.
- ``Not`` contributes nothing; the reported terms and clauses are those of the true
  branches: every true branch of an ``Or``, every child of an ``And``.

Spans: text terms index their field (``field`` is ``title``, ``summary``, ``feed`` or
``tag``); entity terms (``field="entity"``) index ``title + "\\n" + summary``, like
:class:`~workers.model.Entity`; a ``lang:`` term spans the item's language code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from workers.canonical import is_country
from workers.model import Entity, MatchedTerm, StoryView
from workers.query_ast import (
    FIELDS,
    TEXT_FIELDS,
    EntityRef,
    Lang,
    Near,
    Node,
    Or,
    Outlets,
    Phrase,
    Query,
    Term,
    TermSet,
    render,
)
from workers.query_words import Token, name_key, tokenize

if TYPE_CHECKING:
    from workers.query_compile import Compiled
    from workers.semantic import Vector


# A span of tokens in one field: first token, last token, the query term as written.
Span = tuple[int, int, str]
# A matched term with the key that orders and deduplicates the terms of an explanation:
# (field rank, start, end, term, text) identifies the MatchedTerm.
Hit = tuple[tuple[int, int, int, str, str], MatchedTerm]
_ORDER = {name: rank for rank, name in enumerate((*TEXT_FIELDS, "entity", "lang"))}
_COMPARE = {
    ">=": int.__ge__,
    ">": int.__gt__,
    "<=": int.__le__,
    "<": int.__lt__,
    "=": int.__eq__,
}


@dataclass(frozen=True, slots=True)
class Explain:
    """Why a query matched: the terms (spans) and the clauses (as written) that held,
    and the similarity of its ``about:`` clause (the highest, when several held)."""

    terms: tuple[MatchedTerm, ...]
    clauses: tuple[str, ...]
    similarity: float | None = None


class Field:
    """One text field of one item: its tokens, the set of their keys, and (built on
    first use, for spans) the token positions of every key and form."""

    __slots__ = ("_by_form", "_by_key", "keys", "name", "prefixes", "text", "tokens", "words")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.tokens: list[Token] = tokenize(text) if text else []
        self.words: dict[str, str] = {token.form: token.key for token in self.tokens}
        self.keys: set[str] = set(self.words.values())
        self.prefixes: dict[str, list[int]] = {}
        self._by_key: dict[str, list[int]] | None = None
        self._by_form: dict[str, list[int]] = {}

    @property
    def by_key(self) -> dict[str, list[int]]:
        """Stem key -> positions of its tokens."""
        if self._by_key is None:
            self._index()
        assert self._by_key is not None
        return self._by_key

    @property
    def by_form(self) -> dict[str, list[int]]:
        """Folded form -> positions of its tokens."""
        if self._by_key is None:
            self._index()
        return self._by_form

    def _index(self) -> None:
        by_key: dict[str, list[int]] = {}
        by_form = self._by_form
        for index, token in enumerate(self.tokens):
            by_key.setdefault(token.key, []).append(index)
            by_form.setdefault(token.form, []).append(index)
        self._by_key = by_key

    def spans(self, node: Node) -> list[Span]:
        """Where a text leaf (or an ``Or`` of them, for ``NEAR``) occurs in this field."""
        match node:
            case Term():
                if self.name not in node.fields:
                    return []
                if node.mode == "prefix":
                    found = self._prefixed(node.key)
                else:
                    index = self.by_form if node.mode == "exact" else self.by_key
                    found = index.get(node.key, [])
                return [(i, i, _term_text(node)) for i in found]
            case Phrase():
                return self._phrase(node) if self.name in node.fields else []
            case TermSet():
                if self.name not in node.fields:
                    return []
                return [span for member in node.members for span in self.spans(member)]
            case Or():
                return [span for child in node.children for span in self.spans(child)]
            case _:
                return []

    def _prefixed(self, prefix: str) -> list[int]:
        found = self.prefixes.get(prefix)
        if found is None:
            found = sorted(
                i for form, at in self.by_form.items() if form.startswith(prefix) for i in at
            )
            self.prefixes[prefix] = found
        return found

    def _phrase(self, node: Phrase) -> list[Span]:
        index = self.by_form if node.exact else self.by_key
        if any(key not in index for key in node.keys):
            return []
        term = _term_text(node)
        if node.slop is not None:
            return self._sloppy(node, index, term)
        tokens, keys, found = self.tokens, node.keys, []
        for first in index[keys[0]]:
            last = first + len(keys) - 1
            if last >= len(tokens):
                break
            if all(
                (tokens[first + i].form if node.exact else tokens[first + i].key) == keys[i]
                and tokens[first + i].broken == (i in node.breaks)
                for i in range(1, len(keys))
            ):
                found.append((first, last, term))
        return found

    def _sloppy(self, node: Phrase, index: dict[str, list[int]], term: str) -> list[Span]:
        """Windows of ``len(keys) + slop`` tokens that hold every word (any order)."""
        width = len(node.keys) + (node.slop or 0)
        starts = sorted({i for key in node.keys for i in index[key]})
        found: list[Span] = []
        for start in starts:
            used: set[int] = set()
            for key in node.keys:
                spot = next(
                    (i for i in index[key] if start <= i < start + width and i not in used), None
                )
                if spot is None:
                    break
                used.add(spot)
            else:
                found.append((min(used), max(used), term))
        return found

    def hit(self, span: Span) -> Hit:
        start, end = self.tokens[span[0]].start, self.tokens[span[1]].end
        text = self.text[start:end]
        key = (_ORDER[self.name], start, end, span[2], text)
        return key, MatchedTerm(span[2], self.name, start, end, text)


class Document:
    """The parts of one item every rule is evaluated against (see the module docstring).

    Rules are evaluated as :class:`~workers.query_compile.Compiled` closures that ask
    the document cheap questions (is this key in the title or summary?) and, for
    phrases, ``NEAR``, entities and explanations, :meth:`hits`, memoised per leaf.
    """

    def __init__(
        self,
        title: str,
        summary: str = "",
        *,
        feed: str = "",
        tags: Sequence[str] = (),
        language: str | None = None,
        entities: Sequence[Entity] = (),
        story: StoryView | None = None,
    ) -> None:
        texts = (title, summary, feed, "; ".join(tags))
        self.fields = [Field(name, text) for name, text in zip(TEXT_FIELDS, texts, strict=True)]
        self.language = (language or "").casefold().replace("_", "-")
        self.entities: dict[str, list[Entity]] = {}
        for entity in entities:
            self.entities.setdefault(name_key(entity.name), []).append(entity)
        self.story = story
        title_field, summary_field = self.fields[0], self.fields[1]
        # The keys and forms of a bare word's fields (title, summary): most terms of
        # most rules are answered by one set lookup here.
        self.stems: set[str] = title_field.keys | summary_field.keys
        self.forms: set[str] = title_field.words.keys() | summary_field.words.keys()
        self._stems: dict[tuple[str, ...], set[str]] = {FIELDS: self.stems}
        self._forms: dict[tuple[str, ...], set[str]] = {FIELDS: self.forms}
        self._prefixed: dict[tuple[tuple[str, ...], int], set[str]] = {}
        # id(leaf) -> (leaf, its hits). Keyed by identity (the leaf is kept to make the
        # key safe): leaves belong to compiled rules and equal leaves are shared.
        self._memo: dict[int, tuple[Node, list[Hit]]] = {}
        self._vector: Vector | None = None  # the item's embedding, made on first use
        self._similarities: list[float] = []  # of the about: clauses being explained

    def words(self) -> dict[str, str]:
        """Every word of every field: folded form -> stem key."""
        words: dict[str, str] = {}
        for field in self.fields:
            words.update(field.words)
        return words

    def stems_in(self, fields: tuple[str, ...]) -> set[str]:
        """The stem keys of the words in ``fields``."""
        found = self._stems.get(fields)
        if found is None:
            found = self._stems[fields] = set()
            for field in self.fields:
                if field.name in fields:
                    found |= field.keys
        return found

    def forms_in(self, fields: tuple[str, ...]) -> set[str]:
        """The folded forms of the words in ``fields``."""
        found = self._forms.get(fields)
        if found is None:
            found = self._forms[fields] = set()
            for field in self.fields:
                if field.name in fields:
                    found.update(field.words)
        return found

    def has_prefix(self, fields: tuple[str, ...], prefix: str) -> bool:
        """Whether a word in ``fields`` starts with ``prefix``."""
        key = (fields, len(prefix))
        starts = self._prefixed.get(key)
        if starts is None:  # the words' starts of that length, once per length and item
            size = len(prefix)
            starts = self._prefixed[key] = {form[:size] for form in self.forms_in(fields)}
        return prefix in starts

    def has_language(self, code: str) -> bool:
        language = self.language
        return language == code or language.startswith(code + "-")

    def similarity(self, vector: Vector, *, noted: bool = False) -> float:
        """Cosine similarity of the item (title and summary) with a unit ``vector``.

        The item is embedded once, on the first call; ``noted`` (the explain pass)
        records the value for :attr:`Explain.similarity`.
        """
        mine = self._vector
        if mine is None:
            from workers.semantic import embed_one

            text = "\n".join(filter(None, (self.fields[0].text, self.fields[1].text)))
            mine = self._vector = embed_one(text)
        similarity = float(mine @ vector)
        if noted:
            self._similarities.append(similarity)
        return similarity

    def outlets(self, node: Outlets) -> bool:
        """Whether the story condition holds."""
        return _COMPARE[node.op](self._outlets(node.window), node.count)

    def evaluate(self, query: Query) -> Explain | None:
        """The terms and clauses satisfying ``query``, or ``None`` when it does not match.

        Compiles the query on every call: a rule set compiles its rules once instead.
        """
        from workers.query_compile import compile_node

        compiled = compile_node(query.root, {})
        return self.explain(compiled) if compiled.holds(self) else None

    def explain(self, compiled: Compiled) -> Explain:
        """The terms and clauses of a compiled query that holds here."""
        hits: list[Hit] = []
        clauses: list[str] = []
        similarities = self._similarities = []
        compiled.explain(self, hits, clauses)
        if compiled.leaf is None:
            unique = dict(hits)
            terms = tuple(unique[key] for key in sorted(unique))
            similarity = round(max(similarities), 4) if similarities else None
            return Explain(terms, tuple(dict.fromkeys(clauses)), similarity)
        # One word: its hits come in field and text order, each once.
        return Explain(tuple(term for _, term in hits), tuple(clauses))

    def hits(self, node: Node) -> list[Hit]:
        """The occurrences of a leaf, computed once per document (leaves are shared)."""
        memo = self._memo.get(id(node))
        if memo is not None and memo[0] is node:
            return memo[1]
        found: list[Hit]
        match node:
            case Term(mode="stem"):  # the common case, without spans
                found = []
                key, fields, term = node.key, node.fields, _term_text(node)
                for f in self.fields:
                    if f.name in fields and key in f.keys:
                        found.extend(f.hit((i, i, term)) for i in f.by_key[key])
            case Term() | Phrase() | TermSet():
                fields = node.fields
                found = [
                    f.hit(span) for f in self.fields if f.name in fields for span in f.spans(node)
                ]
            case Near():
                found = [hit for f in self.fields for hit in _near(f, node)]
            case EntityRef():
                found = self._entity(node)
            case Lang():
                found = self._lang(node)
            case _:
                found = []
        self._memo[id(node)] = (node, found)
        return found

    def _entity(self, node: EntityRef) -> list[Hit]:
        term = _clause(node)
        order = _ORDER["entity"]
        return [
            (
                (order, entity.start, entity.end, term, entity.text),
                MatchedTerm(term, "entity", entity.start, entity.end, entity.text),
            )
            for entity in self.entities.get(node.key, ())
            if _labelled(entity, node.labels)
        ]

    def _lang(self, node: Lang) -> list[Hit]:
        language = self.language
        if not self.has_language(node.code):
            return []
        term = _clause(node)
        return [
            (
                (_ORDER["lang"], 0, len(language), term, language),
                MatchedTerm(term, "lang", 0, len(language), language),
            )
        ]

    def _outlets(self, window: float | None) -> int:
        story = self.story
        if story is None or not story.outlets:
            return 1
        if window is None:
            return story.outlet_count
        return sum(1 for _, seen in story.outlets if seen - story.first_seen <= window)


@lru_cache(maxsize=65_536)
def _clause(node: Node) -> str:
    return render(node)


@lru_cache(maxsize=65_536)
def _term_text(node: Term | Phrase) -> str:
    """``MatchedTerm.term``: the words as written, marked ``=`` (exact), ``*``, ``~n``."""
    exact = node.mode == "exact" if isinstance(node, Term) else node.exact
    slop = f"~{node.slop}" if isinstance(node, Phrase) and node.slop is not None else ""
    return ("=" if exact else "") + node.text + slop


def _labelled(entity: Entity, labels: tuple[str, ...]) -> bool:
    if not labels or entity.label in labels:
        return True
    return "GPE" in labels and entity.label == "NORP" and is_country(entity.name)


def _near(field: Field, node: Near) -> list[Hit]:
    """The occurrences of both sides that lie within ``node.distance`` words."""
    left, right = field.spans(node.left), field.spans(node.right)
    found: list[Hit] = []
    for a in left:
        for b in right:
            gap = max(a[0], b[0]) - min(a[1], b[1]) - 1
            if 0 <= gap <= node.distance:
                found.extend((field.hit(a), field.hit(b)))
    return found
