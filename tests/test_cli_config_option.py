"""Every command takes ``--config`` after its name too, as the README promises."""

from __future__ import annotations

import click
from click.testing import CliRunner

from monitor.cli import cli


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_every_command_accepts_config_after_its_name() -> None:
    commands = _commands(cli)
    assert ("feeds", "list") in commands and ("entities",) in commands
    for path in commands:
        result = CliRunner().invoke(cli, [*path, "--config", "/no/such/file.yaml", "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "--config" in result.output, path
