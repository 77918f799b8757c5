"""``wirewatch check`` passes the config's term sets to the query check."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config_loader import ConfigError, load_config
from workers.api import query_error

CONFIG = """\
channels: {c: {type: log}}
term_sets:
  aid: [aid, assistance, "military aid"]
rules:
  - {id: good, query: 'China AND @aid', channels: [c]}
  - id: unknown-set
    query: 'China AND @arms'
    channels: [c]
"""


def test_unknown_term_set_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={}, check_query=query_error)
    [problem] = caught.value.problems
    assert problem.line == 7
    assert problem.path == "rules.1.query"
    assert problem.message == (
        "rule unknown-set: syntax error at position 10: unknown term set '@arms' (known: @aid)"
    )


def test_known_term_sets_pass(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(CONFIG.replace("@arms", "@aid"))
    config = load_config(path, env={}, check_query=query_error)
    assert config.term_sets["aid"][2] == "military aid"
