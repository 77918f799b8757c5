"""The rule query language: text in, a small frozen AST out.

Role: turn a rule's ``query`` string into a :class:`Query` whose tree is built from
our own nodes (:class:`And`, :class:`Or`, :class:`Not`, :class:`Term`,
:class:`Phrase`), or raise :class:`QueryError` naming the rule, the character offset
and what was expected. Parsing is delegated to `luqum <https://github.com/jurismarches/luqum>`_,
a well-kept Lucene query-grammar parser (PLY based); nothing luqum-specific escapes
this module. Evaluation against text lives in :mod:`workers.match`.

The language (a subset of Lucene syntax)::

    China AND ("military aid" OR weapons) AND (Russia OR Moscow)
    title:China -Taiwan          # adjacency means AND; -x and NOT x negate
    "pro-Russian" separatists    # a quoted phrase matches consecutive words

- ``AND``, ``OR``, ``NOT`` must be upper case. Precedence, tightest first: ``NOT``/``-``,
  ``AND``, ``OR``, then adjacency (an implicit AND): ``a b OR c`` is ``a AND (b OR c)``.
  Lower-case ``and``/``or``/``not`` are rejected as probable typos (quote them to
  search the word); ``&&``, ``||`` and ``!`` are rejected with a hint.
- A word is what :func:`tokenize` finds (see there); a query word that holds several
  words (``pro-Russian``, ``U.S.``) becomes a :class:`Phrase` of them.
- Every word is compared by :func:`word_key`: case-folded, accents removed, Snowball
  English stem, so ``weapon`` matches ``weapons`` (inside quotes too).
- Fields: ``title:`` and ``summary:`` restrict a term or group; the default is both.
  Other fields, wildcards, fuzzy/proximity (``~``), boosts, ranges and regexes are
  rejected for now: the AST keeps a ``fields`` tuple on every leaf so they can be added.
- Negation must be anchored: a query must not be satisfiable with no word present
  (``NOT x``, ``a OR -b`` are rejected). So every match reports at least one term.

Invariants: nodes are frozen and hashable; ``position`` (offset into the query text)
is excluded from equality, so structurally equal queries compare equal.

Exceptions: ``ValueError`` > :class:`QueryError` (``reason``, ``position``, ``query``,
``rule_id``); luqum's own exceptions are wrapped with ``raise ... from``.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import snowballstemmer
from luqum import tree
from luqum.exceptions import ParseError
from luqum.thread import parse as _luqum_parse

FIELDS: tuple[str, ...] = ("title", "summary")


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


# --- the AST -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One word; ``key`` is its :func:`word_key`, ``text`` the word as written."""

    text: str
    key: str
    fields: tuple[str, ...] = FIELDS
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Phrase:
    """Consecutive words (at least two) in one field.

    ``breaks`` lists the indexes of the words that follow a punctuation break
    (see :class:`Token`) in the phrase as written: ``"U.S. aid"`` has breaks (1, 2).
    """

    text: str
    keys: tuple[str, ...]
    fields: tuple[str, ...] = FIELDS
    position: int = field(default=0, compare=False)
    breaks: tuple[int, ...] = ()


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


Node = Term | Phrase | Not | And | Or


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
        case Term() | Phrase():
            bare = _BARE_RE.fullmatch(node.text) and node.text.upper() not in _OPERATORS
            text = node.text if bare else _quote(node.text)
            return text if node.fields == FIELDS else f"{node.fields[0]}:{text}"
        case Not():
            return f"NOT {_operand(node.child)}"
        case And() | Or():
            glue = " AND " if isinstance(node, And) else " OR "
            return glue.join(_operand(child) for child in node.children)


def _operand(node: Node) -> str:
    return f"({render(node)})" if isinstance(node, And | Or) else render(node)


_BARE_RE = re.compile(r"[^\W_]+")
_OPERATORS = ("AND", "OR", "NOT")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- words ---------------------------------------------------------------------------

_MARKS = "\u0300-\u036f"  # combining accents, in case a text is not NFC
_WORD_RE = re.compile(rf"(?:[^\W_][{_MARKS}]*)+(?:['’](?:[^\W_][{_MARKS}]*)+)*")
_BREAKS = frozenset(".,;:!?…()[]{}—")
_stemmers = threading.local()  # snowballstemmer objects keep state: one per thread


@dataclass(frozen=True, slots=True)
class Token:
    """A word of a text: its :func:`word_key` and character span ``[start, end)``.

    ``broken`` says that clause or sentence punctuation (``. , ; : ! ? … ( ) [ ] —``)
    stands between this word and the one before it; a phrase does not match across
    such a break unless the query's phrase has one in the same place.
    """

    key: str
    start: int
    end: int
    broken: bool = False


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into words with their character offsets.

    A word is a run of Unicode letters and digits, possibly joined by an apostrophe
    (``O'Brien``, ``didn’t``). Hyphens, dots and other punctuation separate words:
    ``pro-Russian`` is ``pro`` + ``Russian``, ``U.S.`` is ``U`` + ``S``. A possessive
    ``'s``/``’s`` is left out of the word and its span: ``Russia’s`` gives ``Russia``.
    """
    tokens: list[Token] = []
    previous_end = 0
    for found in _WORD_RE.finditer(text):
        start, end = found.span()
        broken = bool(tokens) and any(ch in _BREAKS for ch in text[previous_end:start])
        if end - start > 2 and text[end - 2] in "'’" and text[end - 1] in "sS":
            end -= 2
        tokens.append(Token(word_key(text[start:end]), start, end, broken))
        previous_end = end
    return tokens


@lru_cache(maxsize=100_000)
def word_key(word: str) -> str:
    """The comparison key of a word: case-folded, accents removed, English stem.

    Snowball conflates more than plurals: ``aide``/``aides`` -> ``aid``,
    ``generally`` -> ``general``; it keeps ``Russia``/``Russian`` and ``China``/
    ``Chinese`` apart.
    """
    folded = unicodedata.normalize("NFKD", word.casefold().replace("’", "'"))
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(plain))


# --- parsing -------------------------------------------------------------------------

_OPERATOR_HINTS = {"&&": "use AND", "||": "use OR", "!": "use NOT or -"}
_UNSUPPORTED = {
    "Fuzzy": "fuzzy matching (~) is not supported",
    "Proximity": "proximity search (~) is not supported",
    "Boost": "boosts (^) are not supported",
    "Range": "ranges ([a TO b]) are not supported",
    "From": "ranges (>, >=) are not supported",
    "To": "ranges (<, <=) are not supported",
    "Regex": "regular expressions are not supported",
}
_UNEXPECTED_RE = re.compile(r"unexpected\s+'(?P<token>.*)' at position (?P<pos>\d+)")
_ILLEGAL_RE = re.compile(r"Illegal character '(?P<token>.*)' at position (?P<pos>\d+)")
_DANGLING_RE = re.compile(r"(?:\b(?:AND|OR|NOT)|[-+]|\w+:)\s*$")


def parse_query(text: str, rule_id: str | None = None) -> Query:
    """Parse ``text``; raise :class:`QueryError` (with ``rule_id``) when it is unusable."""

    fail = _Fail(text, rule_id)
    if not text.strip():
        raise fail("empty query, expected a word or a quoted phrase", 0)
    _check_brackets(text, fail)
    try:
        parsed = _luqum_parse(text)
    except ParseError as e:
        raise _translate(text, str(e), fail) from e
    root = _Converter(fail).convert(parsed, FIELDS)
    offender = _unanchored(root)
    if offender is not None:
        raise fail(
            f"'{render(offender)}' matches on absence alone: "
            "AND it with a word or phrase that must be present",
            offender.position,
            kind="invalid query",
        )
    return Query(text, root, rule_id)


@dataclass(frozen=True, slots=True)
class _Fail:
    """Builds the :class:`QueryError` of one query: ``raise fail(reason, position)``."""

    query: str
    rule_id: str | None

    def __call__(self, reason: str, position: int, kind: str = "syntax error") -> QueryError:
        return QueryError(
            f"{kind} at position {position}: {reason}",
            position=position,
            query=self.query,
            rule_id=self.rule_id,
        )


def _check_brackets(text: str, fail: _Fail) -> None:
    """Unbalanced quotes and parentheses, reported where they start (luqum says 'end')."""
    opened: list[int] = []
    quote: int | None = None
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quote is not None:
            if char == '"':
                quote = None
        elif char == '"':
            quote = index
        elif char == "(":
            opened.append(index)
        elif char == ")":
            if not opened:
                raise fail("unexpected ')' with no '(' before it", index)
            opened.pop()
    if quote is not None:
        raise fail("unclosed quote, expected a closing '\"'", quote)
    if opened:
        raise fail("unclosed '(', expected a matching ')'", opened[-1])


def _translate(text: str, message: str, fail: _Fail) -> QueryError:
    found = _UNEXPECTED_RE.search(message) or _ILLEGAL_RE.search(message)
    if found:
        token, position = found["token"], int(found["pos"])
        return fail(f"unexpected {token!r}, expected a word, a phrase or '('", position)
    dangling = _DANGLING_RE.search(text)
    if dangling:
        operator = dangling.group().strip()
        return fail(f"expected a word or phrase after {operator!r}, found the end", len(text))
    return fail(f"cannot parse: {message}", len(text))


class _Converter:
    """luqum tree -> our AST, checking what we do not support."""

    def __init__(self, fail: _Fail) -> None:
        self._fail = fail

    def convert(self, node: tree.Item, fields: tuple[str, ...]) -> Node:
        position = node.pos or 0
        if isinstance(node, tree.Group | tree.FieldGroup | tree.Plus):
            return self.convert(node.children[0], fields)
        if isinstance(node, tree.Not | tree.Prohibit):
            return Not(self.convert(node.children[0], fields), position)
        if isinstance(node, tree.AndOperation | tree.UnknownOperation | tree.OrOperation):
            kind = Or if isinstance(node, tree.OrOperation) else And
            children: list[Node] = []
            for child in node.children:
                converted = self.convert(child, fields)
                # Flatten a AND (b AND c): same meaning, simpler trees and renders.
                if isinstance(converted, kind):
                    children.extend(converted.children)
                else:
                    children.append(converted)
            return kind(tuple(children), position)
        if isinstance(node, tree.SearchField):
            return self.convert(node.expr, self._field(node, fields, position))
        if isinstance(node, tree.Phrase):
            return self._leaf(_unescape(node.value[1:-1]), fields, position, quoted=True)
        if isinstance(node, tree.Word):
            return self._word(node.value, fields, position)
        reason = _UNSUPPORTED.get(type(node).__name__, f"unsupported syntax {str(node)!r}")
        raise self._fail(reason, position)

    def _field(self, node: tree.SearchField, fields: tuple[str, ...], position: int) -> tuple[str]:
        name = node.name.casefold()
        if name not in FIELDS:
            known = ", ".join(f"{f}:" for f in FIELDS)
            raise self._fail(f"unknown field {node.name!r}, expected one of {known}", position)
        if fields != FIELDS and fields != (name,):
            raise self._fail(f"field {name!r} inside field {fields[0]!r}", position)
        return (name,)

    def _word(self, raw: str, fields: tuple[str, ...], position: int) -> Node:
        for operator, hint in _OPERATOR_HINTS.items():
            if raw.startswith(operator):
                raise self._fail(f"unexpected {operator!r}: {hint}", position)
        if raw.upper() in _OPERATORS and raw != raw.upper():
            raise self._fail(
                f"{raw!r} looks like an operator: write {raw.upper()} for the operator, "
                f'or "{raw}" to search for the word',
                position,
            )
        wildcard = re.search(r"(?<!\\)[*?]", raw)
        if wildcard:
            raise self._fail("wildcards (* and ?) are not supported", position + wildcard.start())
        return self._leaf(_unescape(raw), fields, position, quoted=False)

    def _leaf(self, text: str, fields: tuple[str, ...], position: int, *, quoted: bool) -> Node:
        tokens = tokenize(text)
        keys = tuple(token.key for token in tokens)
        if not keys:
            what = "phrase" if quoted else "term"
            raise self._fail(f"{what} {text!r} has no letters or digits to match", position)
        if len(keys) == 1:
            return Term(text, keys[0], fields, position)
        breaks = tuple(index for index, token in enumerate(tokens) if token.broken)
        return Phrase(text, keys, fields, position, breaks)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _unanchored(node: Node) -> Node | None:
    """The sub-node that lets ``node`` match with no word present, or ``None``."""
    match node:
        case Term() | Phrase():
            return None
        case Not():
            return node
        case And():
            anchored = any(_unanchored(child) is None for child in node.children)
            return None if anchored else node
        case Or():
            return next((o for o in map(_unanchored, node.children) if o is not None), None)
