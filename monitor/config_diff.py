"""What changed between two configs, and which of it a running process can apply.

Pure functions on validated configs (no I/O), the functional core of
:mod:`monitor.reload`:

- :func:`diff_configs` names what changed: feeds (by URL, shown by name), rules (by
  id) and channels (by name) added, removed or changed, and every other setting by its
  dotted path (``poller.interval``, ``term_sets.aid``). Names only, never values: a
  changed webhook secret shows as ``channels_changed=['ops']``, so a reload's log line
  can never leak one.
- :func:`split_restart` separates the settings a running process cannot change — its
  Redis connection and key names (``redis.url``, ``redis.prefix``) and whatever else its
  caller lists — and gives the config to apply: the new one with those settings kept as
  they were, so the process's config always says what it really runs with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

from pydantic import BaseModel

from monitor.config import Config

# Every process: connections and key names are made once, at start.
RESTART_ONLY: tuple[str, ...] = ("redis.url", "redis.prefix")
# The poller's HTTP session (User-Agent, connection limit) and WebSub callback server.
POLLER_RESTART_ONLY: tuple[str, ...] = (
    "poller.concurrency",
    "poller.user_agent",
    "poller.websub",
)

_LISTS = {"feeds", "rules", "channels", "source"}  # diffed by key, not as settings
_MISSING = object()


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    """Names of what changed; empty tuples where nothing did."""

    feeds_added: tuple[str, ...] = ()
    feeds_removed: tuple[str, ...] = ()
    feeds_changed: tuple[str, ...] = ()
    rules_added: tuple[str, ...] = ()
    rules_removed: tuple[str, ...] = ()
    rules_changed: tuple[str, ...] = ()
    channels_added: tuple[str, ...] = ()
    channels_removed: tuple[str, ...] = ()
    channels_changed: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()  # dotted paths of every other changed setting

    def __bool__(self) -> bool:
        return any(astuple(self))

    def as_fields(self) -> dict[str, list[str]]:
        """The non-empty parts, as key-values for a log line."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)}


def diff_configs(old: Config, new: Config) -> ConfigChanges:
    old_feeds = {feed.url: feed for feed in old.feeds}
    new_feeds = {feed.url: feed for feed in new.feeds}
    feeds = _keyed(old_feeds, new_feeds)
    rules = _keyed({r.id: r for r in old.rules}, {r.id: r for r in new.rules})
    channels = _keyed(old.channels, new.channels)
    return ConfigChanges(
        feeds_added=tuple(new_feeds[url].display_name for url in feeds[0]),
        feeds_removed=tuple(old_feeds[url].display_name for url in feeds[1]),
        feeds_changed=tuple(new_feeds[url].display_name for url in feeds[2]),
        rules_added=rules[0],
        rules_removed=rules[1],
        rules_changed=rules[2],
        channels_added=channels[0],
        channels_removed=channels[1],
        channels_changed=channels[2],
        settings=tuple(
            _leaf_changes(old.model_dump(exclude=_LISTS), new.model_dump(exclude=_LISTS), "")
        ),
    )


def split_restart(old: Config, new: Config, fixed: Iterable[str]) -> tuple[Config, list[str]]:
    """(the config to apply, the settings of ``fixed`` that changed and need a restart).

    The config to apply is ``new`` with each changed ``fixed`` setting put back to its
    value in ``old``.
    """
    changed = [path for path in fixed if _get(old, path) != _get(new, path)]
    applied = new
    for path in changed:
        applied = _put(applied, path.split("."), _get(old, path))
    return applied, changed


def _keyed(
    old: Mapping[str, object], new: Mapping[str, object]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(added, removed, changed) keys, each in the order of the config they are in."""
    added = tuple(key for key in new if key not in old)
    removed = tuple(key for key in old if key not in new)
    changed = tuple(key for key in new if key in old and old[key] != new[key])
    return added, removed, changed


def _leaf_changes(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [key for key in new if key not in old]
        return [
            changed
            for key in keys
            for changed in _leaf_changes(
                old.get(key, _MISSING), new.get(key, _MISSING), f"{path}.{key}" if path else key
            )
        ]
    return [] if old == new else [path]


def _get(model: BaseModel, path: str) -> Any:
    value: Any = model
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _put(model: BaseModel, parts: Sequence[str], value: Any) -> Any:
    """A copy of ``model`` with the setting at ``parts`` set to ``value``."""
    head, rest = parts[0], parts[1:]
    inner = _put(getattr(model, head), rest, value) if rest else value
    return model.model_copy(update={head: inner})
