"""Drift checks: docs, config files, layout rules and CI stay true to the code."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from monitor.config import (
    AppriseChannel,
    Config,
    EmailChannel,
    FeedConfig,
    RuleConfig,
    SmtpSettings,
    WebhookChannel,
)
from monitor.config_loader import load_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _settings(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        if name == "source":
            continue
        key = field.alias or name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _settings(annotation, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return names


def test_every_setting_is_documented_in_the_readme() -> None:
    names = _settings(Config, "")
    names += _settings(WebhookChannel, "channels.<name>.")
    names += _settings(EmailChannel, "channels.<name>.")
    names += _settings(SmtpSettings, "channels.<name>.smtp.")
    names += _settings(AppriseChannel, "channels.<name>.")
    names += _settings(FeedConfig, "feeds[].")
    names += _settings(RuleConfig, "rules[].")
    missing = [name for name in names if f"`{name}`" not in README]
    assert not missing, f"settings missing from the README's configuration reference: {missing}"


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    config = load_config(path, env={"WEBHOOK_SECRET": "whsec_" + "A" * 32})
    for feed in config.feeds:
        if feed.url.startswith("file:"):
            target = (path.parent / feed.url.removeprefix("file:")).resolve()
            assert target.exists(), f"{path.name}: {feed.url} does not exist"


def test_monitor_imports_only_the_public_surface_of_workers() -> None:
    offenders = []
    for source in (ROOT / "monitor").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                if module.split(".")[0] == "workers":
                    allowed = source.name.startswith("cli") and module == "workers.api"
                    if not allowed:
                        offenders.append(f"{source.relative_to(ROOT)} imports {module}")
    assert not offenders


def test_compose_file_has_redis_with_aof_poller_and_scalable_workers() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "poller", "worker", "api"} <= set(services)
    redis_command = services["redis"]["command"]
    assert "--appendonly" in redis_command
    # Evicting an idempotency key would send an alert twice: a full Redis must refuse.
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "healthcheck" in services["redis"]
    assert "container_name" not in services["worker"]  # would block --scale worker=N
    assert services["poller"]["command"] == ["poll"] and services["worker"]["command"] == ["work"]
    assert services["api"]["command"][0] == "serve"
    assert "WIREWATCH_API_TOKEN" in services["api"]["environment"]
    assert all(
        str(port).startswith("${WIREWATCH_API_BIND:-127.0.0.1}:")
        for port in services["api"]["ports"]
    )  # loopback unless the operator says otherwise
    for role in ("poller", "worker", "api"):
        test = services[role]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "monitor.healthcheck"] and test[4] == role


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose not installed")
def test_compose_file_validates_with_docker_compose() -> None:
    done = subprocess.run(
        ["docker-compose", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci and "make test" in README and "make run" in README
