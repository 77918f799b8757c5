"""The rule-query parser: a hand-written recursive-descent parser over :mod:`workers.query_lex`.

Role: text (and the config's term sets) in, a :mod:`workers.query_ast` tree out, or a
:class:`~workers.query_ast.QueryError` naming the rule, the character offset and what
was expected there. Written by hand rather than through a Lucene grammar (luqum, used
before) because half of the language is not Lucene — ``NEAR/n``, ``@set``, ``=exact``,
``entity:GPE:China``, ``outlets >= 3 within 60m`` — and because every error should say
what was expected at that spot, which is easiest when we own the grammar.

Grammar, loosest first (the precedence README documents: adjacency, then OR, AND,
NEAR, NOT)::

    query   := or+                       (adjacent clauses are ANDed)
    or      := and ("OR" and)*
    and     := near ("AND" near)*
    near    := unary ("NEAR/n" unary)?
    unary   := ("NOT" | "-") unary | "+" unary | primary
    primary := "(" query ")" | FIELD ":" primary | word | "=" word | phrase ["~" n]
             | "=" phrase | "@" name | "outlets" op n ["within" n unit]
             | "about" ":" phrase ["~" similarity]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workers.canonical import canonicalize
from workers.query_ast import (
    FIELDS,
    TEXT_FIELDS,
    TEXT_LEAVES,
    About,
    And,
    EntityRef,
    Lang,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    QueryError,
    Term,
    TermSet,
    render,
)
from workers.query_lex import Fail, Tok, lex, unescape
from workers.query_words import name_key, tokenize

# Entity fields: the query prefix -> the spaCy labels it accepts.
ENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "person": ("PERSON",),
    "org": ("ORG",),
    "gpe": ("GPE",),
    "place": ("GPE", "LOC"),
    "loc": ("LOC",),
    "norp": ("NORP",),
    "event": ("EVENT",),
    "fac": ("FAC",),
    "entity": (),
}
LABELS = ("PERSON", "ORG", "GPE", "NORP", "LOC", "FAC", "EVENT", "MISC", "PRODUCT", "LAW")
ALL_FIELDS = (*TEXT_FIELDS, "lang", *ENTITY_FIELDS, "about")
MIN_PREFIX = 3
_LANG_RE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


@dataclass(frozen=True, slots=True)
class _Ctx:
    """Where leaves go: text ``fields``, ``lang``, or an entity field (``labels``)."""

    kind: str = "text"  # "text" | "lang" | "entity"
    fields: tuple[str, ...] = FIELDS
    name: str = ""  # the field as written, normalised; "" for the default fields
    labels: tuple[str, ...] = ()


class Parser:
    """Recursive descent over the tokens of one query (see the module docstring)."""

    def __init__(self, text: str, fail: Fail, term_sets: Mapping[str, Sequence[str]]) -> None:
        self._tokens = lex(text, fail)
        self._index = 0
        self._fail = fail
        self._sets = term_sets

    def parse(self) -> Node:
        node = self._sequence(_Ctx())
        end = self._peek()
        if end.kind != "END":
            raise self._unexpected(end)
        return node

    def _peek(self) -> Tok:
        return self._tokens[self._index]

    def _next(self) -> Tok:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _unexpected(self, token: Tok) -> QueryError:
        if token.kind == "END":
            before = self._tokens[self._index - 1]
            shown = before.text + (":" if before.kind == "FIELD" else "")
            return self._fail(
                f"expected a word or phrase after {shown!r}, found the end", token.pos
            )
        shown = token.text + (":" if token.kind == "FIELD" else "")
        return self._fail(f"unexpected {shown!r}, expected a word, a phrase or '('", token.pos)

    def _sequence(self, ctx: _Ctx) -> Node:
        parts = []
        while self._peek().kind not in ("END", ")"):
            parts.append(self._or(ctx))
        if not parts:
            raise self._unexpected(self._peek())
        return _join(And, parts, parts[0].position)

    def _or(self, ctx: _Ctx) -> Node:
        parts = [self._and(ctx)]
        while self._peek().kind == "OR":
            self._next()
            parts.append(self._and(ctx))
        return _join(Or, parts, parts[0].position)

    def _and(self, ctx: _Ctx) -> Node:
        parts = [self._near(ctx)]
        while self._peek().kind == "AND":
            self._next()
            parts.append(self._near(ctx))
        return _join(And, parts, parts[0].position)

    def _near(self, ctx: _Ctx) -> Node:
        left = self._unary(ctx)
        if self._peek().kind != "NEAR":
            return left
        operator = self._next()
        right = self._unary(ctx)
        for side in (left, right):
            if not _text_operand(side):
                raise self._fail(
                    f"NEAR joins words, phrases, prefixes, @sets or (a OR b) groups of them, "
                    f"not {render(side)!r}",
                    side.position,
                )
        if self._peek().kind == "NEAR":
            raise self._fail(
                "NEAR cannot be chained: write (a NEAR/3 b) AND (b NEAR/3 c)", self._peek().pos
            )
        return Near(left, right, operator.number or 0, left.position)

    def _unary(self, ctx: _Ctx) -> Node:
        token = self._peek()
        if token.kind in ("NOT", "-"):
            self._next()
            return Not(self._unary(ctx), token.pos)
        if token.kind == "+":
            self._next()
            return self._unary(ctx)
        return self._primary(ctx)

    def _primary(self, ctx: _Ctx) -> Node:
        token = self._next()
        if token.kind == "(":
            node = self._sequence(ctx)
            self._next()  # the ")": brackets were checked to balance
            return node
        if token.kind == "FIELD":
            inner = self._field(token, ctx)
            return self._about(token) if inner.kind == "about" else self._primary(inner)
        if token.kind == "OUTLETS" and token.outlets is not None:
            if ctx.name:
                raise self._fail(f"'outlets' cannot be inside field {ctx.name!r}", token.pos)
            return token.outlets
        if token.kind in ("WORD", "PHRASE", "=", "SET"):
            if ctx.kind == "lang":
                return self._lang(token)
            if ctx.kind == "entity":
                return self._entity(token, ctx)
            return self._text(token, ctx)
        self._index -= 1
        raise self._unexpected(token)

    def _field(self, token: Tok, ctx: _Ctx) -> _Ctx:
        name = token.text.casefold()
        if name not in ALL_FIELDS:
            known = ", ".join(f"{f}:" for f in ALL_FIELDS)
            raise self._fail(f"unknown field {token.text!r}, expected one of {known}", token.pos)
        if ctx.name and ctx.name.split(":")[0] != name:
            raise self._fail(f"field {name!r} inside field {ctx.name!r}", token.pos)
        if ctx.name:
            return ctx
        if name in TEXT_FIELDS:
            return _Ctx("text", (name,), name)
        if name in ("lang", "about"):
            return _Ctx(name, name=name)
        labels, shown = ENTITY_FIELDS[name], name
        label = self._peek()
        if name == "entity" and label.kind == "FIELD":
            if label.text.upper() not in LABELS:
                raise self._fail(
                    f"unknown entity label {label.text!r}, expected one of {', '.join(LABELS)}",
                    label.pos,
                )
            self._next()
            labels, shown = (label.text.upper(),), f"entity:{label.text.upper()}"
        return _Ctx("entity", name=shown, labels=labels)

    def _about(self, field: Tok) -> Node:
        """``about:"text"~0.55``: a quoted description, an optional similarity threshold."""
        token = self._next()
        example = 'about:"China supplying weapons to Russia"~0.55'
        if token.kind != "PHRASE":
            raise self._fail(
                f"expected a quoted description after 'about:', as in {example}", token.pos
            )
        if token.number is not None:
            raise self._fail(
                "about: takes a similarity threshold between 0 and 1 after '~' (~0.55), "
                "not a number of words",
                token.pos,
            )
        if not tokenize(token.text):
            raise self._fail(f"about: needs a description with words, as in {example}", token.pos)
        from workers.semantic import unavailable  # numpy, only for rules that use about:

        reason = unavailable()
        if reason is not None:
            raise self._fail(reason, field.pos, kind="invalid query")
        return About(token.text, token.threshold, field.pos)

    def _lang(self, token: Tok) -> Node:
        if token.kind != "WORD" or not _LANG_RE.fullmatch(token.text):
            raise self._fail(
                f"expected a language code such as en or pt-BR after 'lang:', found {token.text!r}",
                token.pos,
            )
        return Lang(token.text.casefold().replace("_", "-"), token.pos)

    def _entity(self, token: Tok, ctx: _Ctx) -> Node:
        if token.kind not in ("WORD", "PHRASE") or token.text.endswith("*"):
            raise self._fail(
                f"expected a name (a word or a quoted phrase) after '{ctx.name}:'", token.pos
            )
        text = unescape(token.text) if token.kind == "WORD" else token.text
        name = canonicalize(text, ctx.labels[0] if ctx.labels else "")
        key = name_key(name)
        if not key:
            raise self._fail(f"name {text!r} has no letters or digits to match", token.pos)
        return EntityRef(text, name, key, ctx.labels, ctx.name, token.pos)

    def _text(self, token: Tok, ctx: _Ctx) -> Node:
        if token.kind == "SET":
            return self._term_set(token, ctx)
        exact, position = token.kind == "=", token.pos
        if exact:
            token = self._next()
            if token.kind not in ("WORD", "PHRASE"):
                self._index -= 1
                raise self._unexpected(token)
        if token.kind == "PHRASE":
            if token.threshold is not None:
                raise self._fail(
                    "a decimal after '~' is a similarity threshold, for about:\"…\"~0.55; "
                    'a phrase takes a number of words ("a b"~3)',
                    token.pos,
                )
            return leaf(token.text, ctx.fields, position, self._fail, exact, token.number)
        return word(token.text, ctx.fields, position, self._fail, exact)

    def _term_set(self, token: Tok, ctx: _Ctx) -> Node:
        members = self._sets.get(token.text)
        if members is None:
            known = ", ".join(f"@{name}" for name in self._sets) or "none: add term_sets"
            raise self._fail(f"unknown term set '@{token.text}' (known: {known})", token.pos)
        nodes: list[Term | Phrase] = []
        for member in members:
            try:
                nodes.append(_member(member, ctx.fields, token.pos, self._fail))
            except QueryError as e:
                detail = e.reason.split(": ", 1)[-1]  # without "syntax error at position n"
                raise self._fail(f"in term set '@{token.text}': {detail}", token.pos) from e
        return TermSet(token.text, tuple(nodes), ctx.fields, token.pos)


def word(raw: str, fields: tuple[str, ...], position: int, fail: Fail, exact: bool) -> Node:
    """A bare word of the query: a prefix (``sanction*``) or a term or phrase."""
    wildcard = re.search(r"(?<!\\)[*?]", raw)
    if wildcard and (wildcard.group() == "?" or wildcard.end() != len(raw)):
        raise fail("only a trailing '*' is supported (prefix*)", position + wildcard.start())
    if wildcard:
        if exact:
            raise fail("'=' and '*' do not combine: a prefix is already exact", position)
        tokens = tokenize(unescape(raw[:-1]))
        if len(tokens) != 1 or tokens[0].end - tokens[0].start < MIN_PREFIX:
            raise fail(
                f"a prefix is one word of at least {MIN_PREFIX} letters before '*'", position
            )
        return Term(unescape(raw), tokens[0].form, fields, position, "prefix")
    return leaf(unescape(raw), fields, position, fail, exact, None)


def leaf(
    text: str,
    fields: tuple[str, ...],
    position: int,
    fail: Fail,
    exact: bool,
    slop: int | None,
) -> Term | Phrase:
    """A :class:`Term` for one word, else a :class:`Phrase` of the words in ``text``."""
    tokens = tokenize(text)
    if not tokens:
        raise fail(
            f"{'term' if slop is None else 'phrase'} {text!r} has no letters or digits to match",
            position,
        )
    keys = tuple(token.form if exact else token.key for token in tokens)
    mode = "exact" if exact else "stem"
    if len(keys) == 1:
        return Term(text, keys[0], fields, position, mode)
    breaks = () if slop is not None else tuple(i for i, t in enumerate(tokens) if t.broken)
    return Phrase(text, keys, fields, position, breaks, exact, slop)


def _member(text: str, fields: tuple[str, ...], position: int, fail: Fail) -> Term | Phrase:
    """One word of a term set: ``word``, ``"a phrase"`` (no quotes needed), ``=exact``, ``pre*``."""
    text = text.strip()
    exact = text.startswith("=")
    text = text.removeprefix("=").strip()
    if text.startswith('"'):  # a quoted phrase: '*' and '?' in it are text, as in a query
        return leaf(text.strip('"'), fields, position, fail, exact, None)
    if re.search(r"(?<!\\)[*?]", text):  # 'pre*'; 'w*d' and 'te?t' fail as in a query
        node = word(text, fields, position, fail, exact)
        assert isinstance(node, Term | Phrase)
        return node
    return leaf(text, fields, position, fail, exact, None)


def _text_operand(node: Node) -> bool:
    if isinstance(node, Or):
        return all(_text_operand(child) for child in node.children)
    return isinstance(node, TEXT_LEAVES)


def _join(kind: type[And] | type[Or], parts: list[Node], position: int) -> Node:
    """One node, or ``kind`` of the parts with nested ``kind`` s flattened."""
    if len(parts) == 1:
        return parts[0]
    children: list[Node] = []
    for part in parts:
        children.extend(part.children if isinstance(part, kind) else (part,))
    return kind(tuple(children), position)
