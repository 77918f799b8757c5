"""The rule-query lexer: query text in, tokens with their offsets out.

Role: the first half of :mod:`workers.query_parse`. It also recognises the tokens that
are more than a word — ``NEAR/n``, ``@set``, ``=``, ``"phrase"~n`` (``"text"~0.55``
for ``about:``) and the story
condition ``outlets >= 3 within 60m`` — and rejects what the language does not have
(``&&``, ``!``, ranges, regexes, fuzzy ``~``, boosts ``^``) at the offending offset.
:func:`check_brackets` runs first, so the lexer may assume balanced quotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workers.query_ast import OPERATORS, Outlets, QueryError

__all__ = ["Fail", "Tok", "check_brackets", "lex", "unescape"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_OUTLETS_RE = re.compile(r"\s*(>=|<=|>|<|=)")
_NUMBER_RE = re.compile(r"\s*(\d+)")
_WITHIN_RE = re.compile(r"\s+within\b")
_DURATION_RE = re.compile(r"\s*(\d+)\s*([smhd])\b")
_SET_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NEAR_RE = re.compile(r"NEAR/(\d+)")
_TILDE_RE = re.compile(r"\d*\.\d+|\d+")  # "a b"~3 (words apart), about:"…"~0.55
_STOP = frozenset(' \t\r\n()"')
_HINTS = {"&&": "use AND", "||": "use OR", "!": "use NOT or -"}


@dataclass(frozen=True, slots=True)
class Fail:
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


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str  # ( ) AND OR NOT - + NEAR FIELD WORD PHRASE = SET OUTLETS END
    text: str  # as written (for messages); a FIELD's name, a PHRASE's unescaped content
    pos: int
    number: int | None = None  # NEAR distance, phrase slop
    outlets: Outlets | None = None
    threshold: float | None = None  # a phrase's ~0.55: the similarity of about:"…"


def lex(text: str, fail: Fail) -> list[Tok]:
    """The tokens of ``text`` (brackets and quotes are already known to balance)."""
    tokens: list[Tok] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(Tok(char, char, i))
            i += 1
        elif char == '"':
            i = _lex_phrase(text, i, fail, tokens)
        elif text.startswith(("&&", "||"), i) or char == "!":
            operator = text[i : i + (1 if char == "!" else 2)]
            raise fail(f"unexpected {operator!r}: {_HINTS[operator]}", i)
        elif char in "-+":
            tokens.append(Tok(char, char, i))
            i += 1
        elif char == "=":
            if i + 1 >= len(text) or text[i + 1] in _STOP - {'"'}:
                raise fail("expected a word or phrase right after '='", i + 1)
            tokens.append(Tok("=", "=", i))
            i += 1
        elif char == "@":
            name = _SET_RE.match(text, i + 1)
            if name is None:
                raise fail("expected a term set name after '@' (letters, digits, _)", i + 1)
            tokens.append(Tok("SET", name.group(), i))
            i = name.end()
        elif char in "[{":
            raise fail("ranges ([a TO b]) are not supported", i)
        elif char in "<>":
            raise fail("comparisons are only for story conditions: outlets >= 3", i)
        elif char == "/":
            raise fail("regular expressions are not supported", i)
        else:
            i = _lex_word(text, i, fail, tokens)
    tokens.append(Tok("END", "", len(text)))
    return tokens


def _lex_phrase(text: str, start: int, fail: Fail, tokens: list[Tok]) -> int:
    i = start + 1
    while text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    content, i = unescape(text[start + 1 : i]), i + 1
    slop, threshold = None, None
    if i < len(text) and text[i] == "~":
        number = _TILDE_RE.match(text, i + 1)
        if number is None:
            raise fail(
                "expected a number of words after '~' (\"a b\"~3), "
                'or a similarity threshold for about: (about:"…"~0.55)',
                i + 1,
            )
        if "." in number.group():
            threshold = float(number.group())
            if not 0.0 < threshold <= 1.0:
                raise fail("expected a similarity threshold above 0 and at most 1", i + 1)
        else:
            slop = int(number.group())
        i = number.end()
    if i < len(text) and text[i] == "^":
        raise fail("boosts (^) are not supported", start)
    tokens.append(Tok("PHRASE", content, start, slop, threshold=threshold))
    return i


def _lex_word(text: str, start: int, fail: Fail, tokens: list[Tok]) -> int:
    i = start
    while i < len(text) and text[i] not in _STOP and text[i] != ":":
        i += 2 if text[i] == "\\" else 1
    raw = text[start:i]
    if i < len(text) and text[i] == ":":
        tokens.append(Tok("FIELD", raw, start))
        return i + 1
    if raw in ("AND", "OR", "NOT"):
        tokens.append(Tok(raw, raw, start))
        return i
    near = _NEAR_RE.fullmatch(raw)
    if near:
        tokens.append(Tok("NEAR", raw, start, int(near.group(1))))
        return i
    if raw.upper().startswith("NEAR/") or raw == "NEAR":
        raise fail("NEAR needs a distance in words and upper case: a NEAR/5 b", start)
    if raw.upper() in OPERATORS[:3] and raw != raw.upper():
        raise fail(
            f"{raw!r} looks like an operator: write {raw.upper()} for the operator, "
            f'or "{raw}" to search for the word',
            start,
        )
    if raw.casefold() == "outlets":
        comparison = _OUTLETS_RE.match(text, i)
        if comparison:
            return _lex_outlets(text, start, comparison, fail, tokens)
    for mark, reason in (("~", "fuzzy matching (~) is not supported"), ("^", "boosts (^)")):
        if re.search(rf"(?<!\\)\{mark}", raw):
            raise fail(reason if mark == "~" else f"{reason} are not supported", start)
    tokens.append(Tok("WORD", raw, start))
    return i


def _lex_outlets(
    text: str, start: int, comparison: re.Match[str], fail: Fail, tokens: list[Tok]
) -> int:
    op = comparison.group(1)
    count = _NUMBER_RE.match(text, comparison.end())
    if count is None:
        raise fail(f"expected a number after 'outlets {op}'", comparison.end())
    i, window, window_text = count.end(), None, ""
    within = _WITHIN_RE.match(text, i)
    if within:
        duration = _DURATION_RE.match(text, within.end())
        if duration is None:
            raise fail("expected a duration such as 60m, 2h or 1d after 'within'", within.end())
        amount, unit = int(duration.group(1)), duration.group(2)
        window, window_text, i = amount * _UNITS[unit], f"{amount}{unit}", duration.end()
    node = Outlets(op, int(count.group(1)), window, window_text, start)
    tokens.append(Tok("OUTLETS", text[start:i], start, outlets=node))
    return i


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def check_brackets(text: str, fail: Fail) -> None:
    """Unbalanced quotes and parentheses, reported where they start."""
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
