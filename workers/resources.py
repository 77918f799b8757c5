"""Heavy, read-only resources a worker loads once, before rq forks a work-horse per job.

rq's default ``Worker`` forks a fresh child for every job; anything loaded in the parent
(the config, compiled rules, the NER model) is inherited by the child for free, while
anything loaded inside a job is paid again by every job. :func:`load` is called by
``wirewatch work`` before ``Worker.work()``; :func:`current` lets a job find them, and
loads them itself when a job runs outside such a worker (tests, ``SimpleWorker``).

Hot reload: the worker parent calls :func:`load` again with the new config between two
jobs (:mod:`workers.worker`). The new :class:`Resources` are built whole before one
assignment makes them current, so a work-horse forked afterwards sees all of them and
one forked before sees none: no job runs with half-loaded resources. The spaCy pipeline
is reused when the NER model did not change (loading it again costs seconds and its
memory twice); only the lift (aliases, watched names) is rebuilt.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass

import httpx

from monitor.config import Config, NerSettings
from monitor.config_loader import load_config
from monitor.keys import Keys
from workers.entities import EntityExtractor, Lift, SpacyExtractor, load_extractor
from workers.match import RuleSet, compile_rules


@dataclass(frozen=True, slots=True)
class Resources:
    config: Config
    keys: Keys
    rules: RuleSet
    extractor: EntityExtractor
    # One HTTP client for every webhook a worker sends: its TLS context (loading the CA
    # bundle: ~10 ms of CPU, more than the rest of a send) is built once, not per send.
    http: httpx.Client | None = None


_current: Resources | None = None
_http: httpx.Client | None = None
KEEPALIVE_EXPIRY_S = 4.0


def load(config: Config, previous: Resources | None = None) -> Resources:
    """Compile the rules and load the NER model; make them the process's resources.

    ``previous``: the resources being replaced (a reload), whose model may be reused.
    """
    global _current
    enabled = [rule for rule in config.rules if rule.enabled]
    rules = compile_rules(enabled, config.term_sets)
    loaded = Resources(
        config=config,
        keys=Keys(config.redis.prefix),
        rules=rules,
        extractor=_extractor(config.workers.ner, rules.watched_entities(), previous),
        http=http_client(),
    )
    _current = loaded  # one assignment: the old resources or the new, never a mix
    return loaded


def _extractor(
    settings: NerSettings, watched: list[tuple[str, str]], previous: Resources | None
) -> EntityExtractor:
    if previous is None:
        return load_extractor(settings, watched=watched)
    before = previous.config.workers.ner
    if settings == before and watched == previous.rules.watched_entities():
        return previous.extractor
    old = previous.extractor
    same_model = (settings.enabled, settings.model) == (before.enabled, before.model)
    if same_model and isinstance(old, SpacyExtractor):
        lift = Lift(gazetteer=settings.gazetteer, aliases=settings.aliases, watched=watched)
        return SpacyExtractor(old.nlp, old.name.removeprefix("spacy:"), lift=lift)
    return load_extractor(settings, watched=watched)


def http_client() -> httpx.Client:
    """The process's webhook client, made on first use and closed at exit. It is owned
    here, and :attr:`Resources.http` only refers to it, so that resources dropped (a
    reload, a test) never leave kept-alive sockets to the garbage collector."""
    global _http
    if _http is None:
        _http = _http_client()
        atexit.register(_http.close)
    return _http


def _http_client() -> httpx.Client:
    """The process's client, kept across reloads. Redirects are never followed (see
    :mod:`workers.delivery.webhook`); each request sets its channel's timeout.
    Keep-alive: a send on an open connection costs ~0.4 ms of CPU, on a new one ~1.5 ms
    (``bench/e2e_worker.py``). An idle connection is closed after
    :data:`KEEPALIVE_EXPIRY_S`, under the usual receivers' own idle timeouts; one the
    receiver closes anyway is detected (httpcore drops a pooled connection that turned
    readable) or, in the race of a close during a send, retried once on a fresh
    connection by :mod:`workers.delivery.webhook`."""
    limits = httpx.Limits(max_keepalive_connections=8, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    return httpx.Client(follow_redirects=False, limits=limits)


def current() -> Resources:
    """The loaded resources; loads from ``$WIREWATCH_CONFIG`` when none are loaded yet."""
    return _current if _current is not None else load(load_config())
