"""Which rules could match an item: an inverted index from word keys to rules.

Role: lets :class:`~workers.match.RuleSet` evaluate only the rules that have a chance,
so 10,000 rules cost about what the few dozen candidates cost (``bench/matching.py``).

How: every rule gets a set of *anchors* — keys such that the rule can only match an
item holding at least one of them (:func:`anchors`): a word's stem key ``k:``, an exact
form ``f:``, a prefix ``p:``, an entity name ``e:``, a language ``l:``. ``AND`` needs
one child's anchors (the rarest-looking child is chosen), ``OR`` needs all of its
children's, a phrase one of its words, ``NEAR`` one of its sides. A rule with no
anchor (one whose required part is ``NOT``, ``outlets`` or ``about:`` only, e.g.
``outlets >= 5 within 30m``, ``about:"arms to Russia"``) is always a candidate. Each
part of a top-level ``AND`` is anchored on its own (:func:`required`), and a rule is a
candidate only when every part has a key in the item. An item's keys
(:meth:`Prefilter.keys`) are looked up in the index; candidates are then evaluated in
full, so the prefilter can only narrow, never change, the result
(``tests/test_prefilter.py`` checks that on random rules and texts).

Why an inverted index and not Aho-Corasick (pyahocorasick): our terms are not
substrings but word keys (stems, lemmas, folded forms), known only after tokenizing;
once a text is tokens, a multi-pattern automaton over them reduces to one dict lookup
per distinct token — which is this index, in pure Python, with no C dependency.
Aho-Corasick over the raw text would need word-boundary checks and could not match
``weapons`` to ``weapon``. Prefixes are served by indexing every prefix length the
rules use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from workers.evaluate import Document
from workers.query_ast import (
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
)

Anchors = frozenset[str]
_KIND = {"stem": "k:", "exact": "f:", "prefix": "p:"}


def anchors(node: Node) -> Anchors | None:
    """Keys one of which an item must hold for ``node`` to match; ``None``: no such set."""
    match node:
        case Term():
            return frozenset({_KIND[node.mode] + node.key})
        case Phrase():
            kind = "f:" if node.exact else "k:"
            return frozenset({kind + max(node.keys, key=len)})
        case TermSet():
            return _union(anchors(member) for member in node.members)
        case Or():
            return _union(anchors(child) for child in node.children)
        case Near():
            return _cheapest([anchors(node.left), anchors(node.right)])
        case And():
            return _cheapest([anchors(child) for child in node.children])
        case EntityRef():
            return frozenset({"e:" + node.key})
        case Lang():
            return frozenset({"l:" + node.code})
        case Not() | Outlets() | About():
            return None


def _union(sets: Iterable[Anchors | None]) -> Anchors | None:
    found: set[str] = set()
    for one in sets:
        if one is None:
            return None
        found |= one
    return frozenset(found)


def _cheapest(sets: Sequence[Anchors | None]) -> Anchors | None:
    usable = [one for one in sets if one is not None]
    return min(usable, key=_cost) if usable else None


def _cost(keys: Anchors) -> float:
    """A guess at how often an item holds one of ``keys``: short words are common,
    languages very common, entity names rare."""
    return sum(_key_cost(key) for key in keys)


def _key_cost(key: str) -> float:
    kind, value = key[:2], key[2:]
    if kind == "l:":
        return 100.0
    if kind == "e:":
        return 0.5
    return (3.0 if kind == "p:" else 0.0) + 8.0 / max(len(value), 1)


def required(node: Node) -> list[Anchors]:
    """Anchor sets that must *all* be hit for ``node`` to match (one per required part).

    The parts of a top-level ``AND`` are required each, so a rule ``a AND b`` is a
    candidate only for items holding both a key of ``a`` and a key of ``b``; any other
    node gives its single anchor set. Empty: the rule has no anchor at all.
    """
    parts = node.children if isinstance(node, And) else (node,)
    found = [anchors(part) for part in parts]
    sets = list(dict.fromkeys(one for one in found if one is not None))
    if not sets and isinstance(node, And):
        single = anchors(node)
        return [single] if single is not None else []
    return sets


class Prefilter:
    """The index of a list of rule trees; :meth:`candidates` gives rule positions.

    Equal trees are indexed once: ``roots`` holds the distinct trees, ``root_of`` the
    distinct tree of each rule position, ``positions`` the rule positions of each
    distinct tree. ``index`` maps a key to ``(root, bit)`` postings, one bit per
    required part of the tree (:func:`required`); a tree is a candidate when every bit
    is set. Trees with a single required part are kept apart in ``single`` (key ->
    roots), so that most lookups are one C-level ``set.update``. What a word adds
    (its ``single`` roots and ``index`` postings, over its stem, form and prefix keys)
    is worked out once per distinct word and cached.
    """

    def __init__(self, roots: Sequence[Node]) -> None:
        distinct: dict[Node, int] = {}
        self.roots: list[Node] = []
        self.root_of: list[int] = []
        self.positions: list[list[int]] = []
        for position, root in enumerate(roots):
            number = distinct.setdefault(root, len(distinct))
            if number == len(self.roots):
                self.roots.append(root)
                self.positions.append([])
            self.root_of.append(number)
            self.positions[number].append(position)
        self.index: dict[str, list[tuple[int, int]]] = {}
        self.single: dict[str, list[int]] = {}  # roots with one required part: no mask
        self.always_roots: list[int] = []
        self.full: dict[int, int] = {}  # root -> the mask of all its bits
        lengths: set[int] = set()
        for number, root in enumerate(self.roots):
            parts = required(root)
            if not parts:
                self.always_roots.append(number)
                continue
            self.full[number] = (1 << len(parts)) - 1
            for bit, keys in enumerate(parts):
                for key in keys:
                    if len(parts) == 1:
                        self.single.setdefault(key, []).append(number)
                    else:
                        self.index.setdefault(key, []).append((number, 1 << bit))
                    if key.startswith("p:"):
                        lengths.add(len(key) - 2)
        self.always = sorted(p for number in self.always_roots for p in self.positions[number])
        self.prefix_lengths = tuple(sorted(lengths))
        self._words: dict[str, _Postings | None] = {}  # form -> what the word adds

    def keys(self, document: Document) -> set[str]:
        """The anchor keys ``document`` holds."""
        keys: set[str] = set()
        for form, key in document.words().items():
            keys.update(self._keys_of_word(key, form))
        keys.update(self._item_keys(document))
        return keys

    def _keys_of_word(self, key: str, form: str) -> tuple[str, ...]:
        prefixes = tuple("p:" + form[:n] for n in self.prefix_lengths if len(form) >= n)
        return ("k:" + key, "f:" + form, *prefixes)

    @staticmethod
    def _item_keys(document: Document) -> list[str]:
        """Keys of the item rather than of a word: entity names, the language."""
        keys = ["e:" + name for name in document.entities]
        parts = document.language.split("-") if document.language else []
        keys.extend("l:" + "-".join(parts[:end]) for end in range(1, len(parts) + 1))
        return keys

    def _postings(self, keys: Iterable[str]) -> _Postings | None:
        singles: list[int] = []
        postings: list[tuple[int, int]] = []
        for key in keys:
            singles.extend(self.single.get(key, ()))
            postings.extend(self.index.get(key, ()))
        return (tuple(singles), tuple(postings)) if singles or postings else None

    def candidate_roots(self, document: Document) -> set[int]:
        """The distinct trees (indexes into :attr:`roots`) that may match ``document``."""
        found = set(self.always_roots)
        masks: dict[int, int] = {}
        cache = self._words
        if len(cache) > _CACHE_SIZE:
            cache.clear()
        hits: list[_Postings] = []
        for form, key in document.words().items():
            try:
                word = cache[form]
            except KeyError:
                word = cache[form] = self._postings(self._keys_of_word(key, form))
            if word is not None:
                hits.append(word)
        item = self._postings(self._item_keys(document))
        if item is not None:
            hits.append(item)
        for singles, postings in hits:
            found.update(singles)
            for number, bit in postings:
                masks[number] = masks.get(number, 0) | bit
        full = self.full
        found.update(number for number, mask in masks.items() if mask == full[number])
        return found

    def candidates(self, document: Document) -> list[int]:
        """Positions of the rules that may match ``document``, ascending."""
        positions = self.positions
        return sorted(p for number in self.candidate_roots(document) for p in positions[number])


_Postings = tuple[tuple[int, ...], tuple[tuple[int, int], ...]]
_CACHE_SIZE = 200_000  # distinct words remembered (a form's key never changes)
