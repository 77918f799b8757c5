"""Read a YAML config file into a validated :class:`~monitor.config.Config`.

Steps: compose the YAML into nodes (keeping line numbers), expand ``${VAR}`` and
``${VAR:-default}`` in string scalars, construct plain data, validate with pydantic.
Every problem — YAML syntax, a missing environment variable, a schema error, an
unknown reference — is collected and raised together as :class:`ConfigError`, each
with its dotted path and the file line it comes from.

Interpolation happens only inside string values, never in keys, and its result is
not re-scanned, so a secret containing ``${`` stays intact.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.config import Config, reference_problems
from monitor.config_channels import CHANNEL_TYPES

DEFAULT_CONFIG = Path("config/wirewatch.yaml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top)'}: {self.message}"


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def resolve_path(path: str | Path | None) -> Path:
    """--config, else $WIREWATCH_CONFIG, else config/wirewatch.yaml."""
    return Path(path or os.environ.get("WIREWATCH_CONFIG") or DEFAULT_CONFIG)


# Checks one rule's query: (rule id, query) → an error message, or None when it parses.
# Injected by the CLI from ``workers`` (monitor does not import the rule compiler).
QueryCheck = Callable[[str, str], str | None]


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
    config = parse_config(text, str(source), os.environ if env is None else env, check_query)
    return config.model_copy(update={"source": source.resolve()})


def parse_config(
    text: str, source: str, env: Mapping[str, str], check_query: QueryCheck | None = None
) -> Config:
    problems: list[ConfigProblem] = []
    lines: dict[str, int] = {}
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _interpolate(node, (), env, lines, problems)
                data = loader.construct_document(node)
            else:
                data = {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, [ConfigProblem("", f"invalid YAML: {exc}", line)]) from exc
    if not isinstance(data, dict):
        problems.append(ConfigProblem("", "the config must be a mapping of sections"))
        raise ConfigError(source, problems)
    # Cross-references and queries are checked on the raw data, so that they are reported
    # together with schema errors: the operator sees every problem at once.
    for path, message in reference_problems(data):
        problems.append(ConfigProblem(path, message, _line_for(path, lines)))
    if check_query is not None:
        problems.extend(_query_problems(data, lines, check_query))
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_from_validation(exc, lines))
    if problems or config is None:
        unique = {(p.path, p.message): p for p in problems}.values()
        raise ConfigError(source, sorted(unique, key=lambda p: p.line or 0))
    return config


def _interpolate(
    node: yaml.Node,
    path: tuple[str, ...],
    env: Mapping[str, str],
    lines: dict[str, int],
    problems: list[ConfigProblem],
) -> None:
    dotted = ".".join(path)
    lines.setdefault(dotted, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _interpolate(value_node, (*path, str(key_node.value)), env, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _interpolate(child, (*path, str(index)), env, lines, problems)
    elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "${" in node.value:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value:
                return value
            if default is not None:
                return default
            problems.append(
                ConfigProblem(dotted, f"environment variable {name} is not set", lines[dotted])
            )
            return ""

        node.value = _VAR.sub(substitute, node.value)


def _from_validation(exc: ValidationError, lines: dict[str, int]) -> list[ConfigProblem]:
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
                problems.append(ConfigProblem(path, text, _line_for(path, lines)))
            continue
        path = ".".join(loc)
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check its spelling)"
        elif error["type"] == "missing":
            message = "required setting is missing"
        problems.append(ConfigProblem(path, message, _line_for(path, lines)))
    return problems


def _query_problems(
    data: dict[str, Any], lines: dict[str, int], check_query: QueryCheck
) -> list[ConfigProblem]:
    rules = data.get("rules")
    problems = []
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        query = rule.get("query") if isinstance(rule, dict) else None
        if isinstance(query, str) and query.strip():
            error = check_query(str(rule.get("id", "")), query)
            if error:
                path = f"rules.{index}.query"
                problems.append(ConfigProblem(path, error, _line_for(path, lines)))
    return problems


def _line_for(path: str, lines: dict[str, int]) -> int | None:
    parts = path.split(".")
    while parts:  # the nearest ancestor that exists in the file
        found = lines.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None
