"""Read a YAML config file into a validated :class:`~monitor.config.Config`.

Steps: compose the YAML into nodes (keeping line numbers), expand ``${VAR}`` and
``${VAR:-default}`` in string scalars, read the feed files named by ``include``,
construct plain data, validate with pydantic. Every problem — YAML syntax, a missing
environment variable, a schema error, an unknown reference, a bad query — is collected
and raised together as :class:`ConfigError`, each with its dotted path and the file
and line it comes from.

Interpolation happens only inside string values, never in keys, and its result is
not re-scanned, so a secret containing ``${`` stays intact.

``include`` lists files (globs allowed) relative to the config file's folder; each
holds a list of feeds (or a mapping with a ``feeds`` list), appended to ``feeds`` in
order. Relative ``file:`` URLs in them resolve against the main config's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.config import Config, reference_problems
from monitor.config_channels import CHANNEL_TYPES

DEFAULT_CONFIG = Path("config/wirewatch.yaml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_STR_TAG = "tag:yaml.org,2002:str"

# Checks one rule's query: (rule id, query, the config's term sets) → an error message,
# or None when it parses. Injected by the CLI from ``workers`` (monitor does not import
# the rule compiler); the term sets are passed so that an unknown ``@name`` is reported.
QueryCheck = Callable[[str, str, Mapping[str, Sequence[str]]], str | None]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    message: str
    line: int | None = None
    file: str | None = None  # set when the problem is in an included file

    def __str__(self) -> str:
        where = f"{self.file} " if self.file else ""
        where += f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top)'}: {self.message}"


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


@dataclass
class _Locations:
    """Where each dotted path of the merged data came from: (included file or None, line)."""

    places: dict[str, tuple[str | None, int]] = field(default_factory=dict)

    def add(self, path: str, file: str | None, line: int) -> None:
        self.places.setdefault(path, (file, line))

    def problem(self, path: str, message: str) -> ConfigProblem:
        parts = path.split(".")
        while parts:  # the nearest ancestor that exists in a file
            found = self.places.get(".".join(parts))
            if found is not None:
                return ConfigProblem(path, message, found[1], found[0])
            parts.pop()
        return ConfigProblem(path, message)


def resolve_path(path: str | Path | None) -> Path:
    """--config, else $WIREWATCH_CONFIG, else config/wirewatch.yaml."""
    return Path(path or os.environ.get("WIREWATCH_CONFIG") or DEFAULT_CONFIG)


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    check_query: QueryCheck | None = None,
) -> Config:
    source = resolve_path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(source), [ConfigProblem("", f"cannot read: {exc}")]) from exc
    environment = os.environ if env is None else env
    config = parse_config(text, str(source), environment, check_query, base_dir=source.parent)
    return config.model_copy(update={"source": source.resolve()})


def parse_config(
    text: str,
    source: str,
    env: Mapping[str, str],
    check_query: QueryCheck | None = None,
    base_dir: Path | None = None,
) -> Config:
    problems: list[ConfigProblem] = []
    places = _Locations()
    try:
        data = _read_yaml(text, None, (), env, places, problems)
    except ConfigError as exc:
        raise ConfigError(source, exc.problems) from exc
    if data is None:
        # An empty file is never meant: an editor that truncated it, or a wrong path. A
        # reload would otherwise drop every feed, rule and channel of a running service.
        problems.append(ConfigProblem("", "the config file is empty (no sections)"))
        raise ConfigError(source, problems)
    if not isinstance(data, dict):
        problems.append(ConfigProblem("", "the config must be a mapping of sections"))
        raise ConfigError(source, problems)
    if data.get("include"):
        _include(data, base_dir or Path.cwd(), env, places, problems)
    # Cross-references and queries are checked on the raw data, so that they are reported
    # together with schema errors: the operator sees every problem at once.
    for path, message in reference_problems(data):
        problems.append(places.problem(path, message))
    if check_query is not None:
        problems.extend(_query_problems(data, places, check_query))
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_from_validation(exc, places))
    if problems or config is None:
        unique = {(p.path, p.message): p for p in problems}.values()
        raise ConfigError(source, sorted(unique, key=lambda p: (p.file or "", p.line or 0)))
    return config


def _read_yaml(
    text: str,
    file: str | None,
    prefix: tuple[str, ...],
    env: Mapping[str, str],
    places: _Locations,
    problems: list[ConfigProblem],
) -> Any:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _interpolate(node, prefix, file, env, places, problems)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = ConfigProblem(".".join(prefix), f"invalid YAML: {exc}", line, file)
        if file is None:
            raise ConfigError("config", [problem]) from exc
        problems.append(problem)
        return None


def _include(
    data: dict[str, Any],
    base_dir: Path,
    env: Mapping[str, str],
    places: _Locations,
    problems: list[ConfigProblem],
) -> None:
    patterns = data["include"]
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        problems.append(places.problem("include", "a list of file names or globs"))
        return
    feeds = data.get("feeds") or []
    if not isinstance(feeds, list):
        return  # the schema reports it
    for index, pattern in enumerate(patterns):
        files = sorted(base_dir.glob(pattern))
        if not files and not any(ch in pattern for ch in "*?["):
            # A plain name must exist; a glob may match nothing yet (an empty feeds/ folder).
            problems.append(places.problem(f"include.{index}", f"no such file: {pattern!r}"))
        for path in files:
            label = str(path.relative_to(base_dir)) if path.is_relative_to(base_dir) else str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                problems.append(places.problem(f"include.{index}", f"cannot read {label}: {exc}"))
                continue
            included = _read_yaml(text, label, (), env, _Locations(), [])  # shape check first
            if isinstance(included, dict):
                included = included.get("feeds")
            if not isinstance(included, list):
                problems.append(
                    ConfigProblem("", "an included file holds a list of feeds", 1, label)
                )
                continue
            # Read again with the merged positions, so errors point into this file.
            offset = len(feeds)
            entries = _read_feed_list(text, label, offset, env, places, problems)
            feeds.extend(entries)
    data["feeds"] = feeds


def _read_feed_list(
    text: str,
    label: str,
    offset: int,
    env: Mapping[str, str],
    places: _Locations,
    problems: list[ConfigProblem],
) -> list[Any]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if isinstance(node, yaml.MappingNode):
            node = next(
                (value for key, value in node.value if key.value == "feeds"),
                yaml.SequenceNode("tag:yaml.org,2002:seq", []),
            )
        assert isinstance(node, yaml.SequenceNode)
        entries = []
        for index, child in enumerate(node.value):
            _interpolate(child, ("feeds", str(offset + index)), label, env, places, problems)
            entries.append(loader.construct_document(child))
        return entries
    finally:
        loader.dispose()


def _interpolate(
    node: yaml.Node,
    path: tuple[str, ...],
    file: str | None,
    env: Mapping[str, str],
    places: _Locations,
    problems: list[ConfigProblem],
) -> None:
    dotted = ".".join(path)
    places.add(dotted, file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:  # YAML keeps the last one: the first would vanish silently
                where = f"{dotted}.{key}" if dotted else key
                line = key_node.start_mark.line + 1
                problems.append(ConfigProblem(where, "duplicate key (given twice)", line, file))
            seen.add(key)
            _interpolate(value_node, (*path, key), file, env, places, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _interpolate(child, (*path, str(index)), file, env, places, problems)
    elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "${" in node.value:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value:
                return value
            if default is not None:
                return default
            problems.append(places.problem(dotted, f"environment variable {name} is not set"))
            return ""

        node.value = _VAR.sub(substitute, node.value)


def _from_validation(exc: ValidationError, places: _Locations) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # A discriminated union adds the tag to the location (channels.ops.webhook.url).
        if len(loc) > 2 and loc[0] == "channels" and loc[2] in CHANNEL_TYPES:
            del loc[2]
        message = error["msg"].removeprefix("Value error, ")
        if not loc:  # the model's cross-reference check: "path: message" per line
            for row in message.splitlines():
                path, _, text = row.partition(": ")
                problems.append(places.problem(path, text))
            continue
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check its spelling)"
        elif error["type"] == "missing":
            message = "required setting is missing"
        problems.append(places.problem(".".join(loc), message))
    return problems


def _query_problems(
    data: dict[str, Any], places: _Locations, check_query: QueryCheck
) -> list[ConfigProblem]:
    rules = data.get("rules")
    raw_sets = data.get("term_sets")
    # Well-formed sets only: a malformed one is reported by the schema, not per query.
    term_sets = {
        str(name): [str(word) for word in words]
        for name, words in (raw_sets.items() if isinstance(raw_sets, dict) else ())
        if isinstance(words, list)
    }
    problems = []
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        query = rule.get("query") if isinstance(rule, dict) else None
        if isinstance(query, str) and query.strip():
            error = check_query(str(rule.get("id", "")), query, term_sets)
            if error:
                problems.append(places.problem(f"rules.{index}.query", error))
    return problems
