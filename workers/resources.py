"""Heavy, read-only resources a worker loads once, before rq forks a work-horse per job.

rq's default ``Worker`` forks a fresh child for every job; anything loaded in the parent
(the config, compiled rules, the NER model) is inherited by the child for free, while
anything loaded inside a job is paid again by every job. :func:`load` is called by
``wirewatch work`` before ``Worker.work()``; :func:`current` lets a job find them, and
loads them itself when a job runs outside such a worker (tests, ``SimpleWorker``).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.config import Config
from monitor.config_loader import load_config
from monitor.keys import Keys
from workers.entities import EntityExtractor, load_extractor
from workers.match import RuleSet, compile_rules


@dataclass(frozen=True, slots=True)
class Resources:
    config: Config
    keys: Keys
    rules: RuleSet
    extractor: EntityExtractor


_current: Resources | None = None


def load(config: Config) -> Resources:
    """Compile the rules and load the NER model; make them the process's resources."""
    global _current
    enabled = [rule for rule in config.rules if rule.enabled]
    rules = compile_rules(enabled, config.term_sets)
    _current = Resources(
        config=config,
        keys=Keys(config.redis.prefix),
        rules=rules,
        extractor=load_extractor(config.workers.ner, watched=rules.watched_entities()),
    )
    return _current


def current() -> Resources:
    """The loaded resources; loads from ``$WIREWATCH_CONFIG`` when none are loaded yet."""
    return _current if _current is not None else load(load_config())
