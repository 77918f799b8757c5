"""Config loading: interpolation, secrets, every error with its path and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import EmailChannel, WebhookChannel
from monitor.config_loader import ConfigError, load_config, parse_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

GOOD = """
redis: {url: "${REDIS_URL:-}"}
feeds:
  - {url: "https://example.org/world.rss", name: "Example World", interval: 300, tags: [world]}
  - {url: "file:../seeds/feeds/world.xml", name: "Seed wire"}
channels:
  ops:     {type: webhook, url: "https://hooks.example.org/ww", secret: "${WEBHOOK_SECRET}"}
  desk:    {type: email, to: ["desk@example.org"], from: "wirewatch@example.org",
            smtp: {host: localhost, port: "${SMTP_PORT:-2525}", password: "${SMTP_PASSWORD:-}"}}
  console: {type: log}
rules:
  - id: china-military-aid
    query: 'China AND ("military aid" OR weapons) AND (Russia OR Moscow)'
    channels: [ops, desk, console]
"""


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    """``wirewatch --config PATH check`` in a process of its own, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(path), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_interpolation_defaults_and_secrets() -> None:
    config = parse_config(GOOD, "good.yaml", {"WEBHOOK_SECRET": SECRET, "SMTP_PASSWORD": "hunter2"})
    assert config.redis.url == ""
    ops, desk = config.channels["ops"], config.channels["desk"]
    assert isinstance(ops, WebhookChannel) and isinstance(desk, EmailChannel)
    assert ops.secrets == [SECRET]
    assert desk.smtp.port == 2525  # a default from ${VAR:-default}, coerced to int
    assert desk.smtp.password.get_secret_value() == "hunter2"
    assert SECRET not in repr(config) and "hunter2" not in repr(config)
    assert config.feed_interval(config.feeds[1]) == config.poller.interval


def test_interpolated_values_are_not_rescanned() -> None:
    config = parse_config(GOOD, "good.yaml", {"WEBHOOK_SECRET": SECRET, "SMTP_PASSWORD": "${X}"})
    desk = config.channels["desk"]
    assert isinstance(desk, EmailChannel)
    assert desk.smtp.password.get_secret_value() == "${X}"


BROKEN = """redis: {url: ""}
poller: {intervall: 3}
feeds:
  - {url: "ftp://example.org/x", name: "FTP"}
  - {url: "https://example.org/a.rss", interval: 0}
channels:
  ops: {type: webhook, url: "https://hooks.example.org/ww", secret: "${NOT_SET_ANYWHERE}"}
  bad: {type: pigeon}
  mail: {type: email, to: [], from: "nobody"}
rules:
  - id: r1
    query: "China"
    channels: [ops, nope]
"""


def test_every_error_is_listed_with_path_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BROKEN, "broken.yaml", {})
    problems = {p.path: p for p in caught.value.problems}
    assert problems["channels.ops.secret"].message == (
        "environment variable NOT_SET_ANYWHERE is not set"
    )
    assert problems["channels.ops.secret"].line == 7
    assert problems["poller.intervall"].line == 2
    assert "unknown setting" in problems["poller.intervall"].message
    assert "ftp" in problems["feeds.0.url"].message and problems["feeds.0.url"].line == 4
    assert problems["feeds.1.interval"].line == 5
    assert "pigeon" in problems["channels.bad"].message
    assert "channels.mail.to" in problems and "channels.mail.from" in problems
    assert "unknown channel 'nope'" in problems["rules.0.channels"].message
    assert len(caught.value.problems) >= 8


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("feeds:\n  - {url: [unclosed\n", "bad.yaml", {})
    [problem] = caught.value.problems
    assert "invalid YAML" in problem.message and problem.line is not None


def test_a_malformed_webhook_secret_is_rejected() -> None:
    text = GOOD.replace("${WEBHOOK_SECRET}", "not-a-whsec-secret")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "x.yaml", {})
    assert any("whsec_" in p.message for p in caught.value.problems)
    assert all("not-a-whsec-secret" not in str(p) for p in caught.value.problems)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ('{"t": {{ alert.item.title }', "template line 1: unexpected '}'"),
        ('{"t": {{ alert.item.title | shout }}}', "template line 1: No filter named 'shout'"),
    ],
)
def test_a_webhook_template_that_does_not_compile_is_a_config_error(
    template: str, reason: str
) -> None:
    """Refused by ``check`` and by a reload, not found out by every alert's dead letter."""
    text = (
        "channels:\n  hook:\n    type: webhook\n    url: http://127.0.0.1:9/x\n"
        f"    format: template\n    template: '{template}'\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "x.yaml", {})
    [problem] = caught.value.problems
    assert reason in problem.message and problem.line == 3


def test_a_webhook_template_that_compiles_is_accepted() -> None:
    text = (
        "channels:\n  hook:\n    type: webhook\n    url: http://127.0.0.1:9/x\n"
        "    format: template\n    template: '{\"t\": {{ alert.item.title | tojson }}}'\n"
    )
    channel = parse_config(text, "x.yaml", {}).channels["hook"]
    assert isinstance(channel, WebhookChannel) and channel.template is not None


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_check_command_lists_every_error_and_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    done = run_check(path)
    assert done.returncode == 2
    assert "line 7: channels.ops.secret" in done.stderr
    assert "line 2: poller.intervall" in done.stderr
    assert "unknown channel 'nope'" in done.stderr


def test_check_command_renders_templates_on_a_sample_alert(tmp_path: Path) -> None:
    """A misspelt name, output that is not JSON, and a template for single alerts on a
    channel that a rule's ``max`` rate or ``quiet_hours`` also send digests to: each
    named; a digest-only template on a digest channel and a correct one pass."""
    hook = "type: webhook, url: 'http://127.0.0.1:9/x', format: template"
    good = """'{"t": {{ alert.item.title | tojson }}, "o": {{ alert.story.outlet_count }}}'"""
    path = tmp_path / "t.yaml"
    path.write_text(
        "channels:\n"
        f"""  typo: {{{hook}, template: '{{"t": {{{{ alert.itme.title | tojson }}}}}}'}}\n"""
        f"  text: {{{hook}, template: 'Alert: {{{{ alert.item.title }}}}'}}\n"
        f"  rated: {{{hook}, template: {good}}}\n"
        f"  good: {{{hook}, template: {good}}}\n"
        f"  quiet: {{{hook}, template: {good}}}\n"
        f"""  held: {{{hook}, digest: 15m, template: '{{"n": {{{{ alerts | length }}}}}}'}}\n"""
        "rules:\n"
        "  - {id: r1, query: China, channels: [typo, text, good, held]}\n"
        "  - {id: r2, query: Russia, channels: [rated], max: 5/h}\n"
        "  - {id: r3, query: Porto, channels: [quiet],"
        " quiet_hours: {start: '22:00', end: '07:00'}}\n"
    )
    done = run_check(path)
    assert done.returncode == 2, done.stderr
    assert "channels.typo.template: fails on a sample alert" in done.stderr
    assert "no attribute 'itme'" in done.stderr
    assert "channels.text.template" in done.stderr and "not valid JSON" in done.stderr
    assert "channels.rated.template" in done.stderr and "'alert' is undefined" in done.stderr
    assert "channels.quiet.template" in done.stderr
    assert "channels.good" not in done.stderr and "channels.held" not in done.stderr


def test_check_command_reports_bad_queries(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(
        "channels: {c: {type: log}}\n"
        "rules:\n"
        "  - {id: good, query: 'China AND Russia', channels: [c]}\n"
        "  - {id: broken, query: 'China AND (Russia', channels: [c]}\n"
        "  - {id: dangling, query: 'China AND', channels: [c]}\n"
    )
    done = run_check(path)
    assert done.returncode == 2
    assert "rules.1.query" in done.stderr and "broken" in done.stderr
    assert "rules.2.query" in done.stderr and "dangling" in done.stderr
    assert "rules.0" not in done.stderr


def test_check_command_accepts_the_shipped_config() -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(root / "config/wirewatch.yaml"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


EVERYTHING_WRONG = """redis: {prefx: "x:"}
feeds:
  - {url: "file:a.xml"}
  - {url: "file:a.xml"}
channels:
  email: {type: email, to: ["nope"], from: "a@b.example"}
  "bad name!": {type: log}
rules:
  - {id: r1, query: "China AND (Russia", channels: [email, nope]}
  - {id: r1, query: "x and y", channels: [email]}
"""


def test_every_kind_of_error_is_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(EVERYTHING_WRONG)
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "--config", str(path)],  # --config after
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    expected = [
        "line 1: redis.prefx: unknown setting",
        "line 4: feeds.1.url: duplicate feed 'file:a.xml'",
        "line 6: channels.email.to: not a plain e-mail address: 'nope'",
        "line 7: channels.bad name!: a channel name is letters",
        "line 9: rules.0.channels: unknown channel 'nope'",
        "line 9: rules.0.query: rule r1: syntax error at position 10",
        "line 10: rules.1.id: duplicate rule id 'r1'",
        "line 10: rules.1.query: rule r1: syntax error at position 2",
    ]
    for line in expected:
        assert line in done.stderr, (line, done.stderr)
    assert "7 problem(s)" not in done.stderr and "8 problem(s)" in done.stderr


def test_the_config_can_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("channels: {c: {type: log}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "WIREWATCH_CONFIG": str(path)},
    )
    assert done.returncode == 0, done.stderr
    assert str(path) in done.stdout


def test_a_webhook_url_is_a_secret() -> None:
    """Slack and Teams incoming-webhook URLs carry their token in the path."""
    text = GOOD.replace("https://hooks.example.org/ww", "https://hooks.slack.test/T0/B0/s3cr3t")
    config = parse_config(text, "good.yaml", {"WEBHOOK_SECRET": SECRET})
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in str(config.channels)


def test_an_smtp_password_smtplib_cannot_send_is_a_config_error_without_the_value() -> None:
    text = "channels:\n  desk: {type: email, to: [a@b.c], from: w@b.c, smtp: {password: '${PW}'}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", {"PW": "pässword-s3cr3t"})
    [problem] = caught.value.problems
    assert "not ASCII" in problem.message and "s3cr3t" not in str(problem)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_config_is_an_error(text: str) -> None:
    """A truncated file (an editor mid-save) must not become a config without feeds,
    rules or channels: a reload would drop them all from a running service."""
    with pytest.raises(ConfigError, match="empty"):
        parse_config(text, "x.yaml", {})


def test_a_key_given_twice_is_an_error_with_its_line() -> None:
    """YAML keeps the last of two equal keys: the first block would vanish silently."""
    text = (
        "channels: {c: {type: log}}\n"
        "rules:\n  - {id: a, query: China, channels: [c]}\n"
        "rules:\n  - {id: b, query: Russia, channels: [c]}\n"
        "poller: {interval: 5, interval: 6}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "x.yaml", {})
    found = {(p.path, p.line) for p in caught.value.problems if "twice" in p.message}
    assert found == {("rules", 4), ("poller.interval", 6)}


def test_urls_that_can_never_work_are_config_errors() -> None:
    """No host, a space, a port out of range: at run time these looked like network
    faults (retried for ever, or a crash report each poll); the config names them."""
    text = (
        "feeds:\n"
        "  - {url: 'http://'}\n"
        "  - {url: 'http://127.0.0.1:99999/x'}\n"
        "  - {url: 'http://exa mple.org/y'}\n"
        "  - {url: 'https://ok.example.org/feed'}\n"
        "channels:\n"
        "  h1: {type: webhook, url: 'http://'}\n"
        "  h2: {type: webhook, url: 'http://127.0.0.1:99999/hook-s3cr3t'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "x.yaml", {})
    problems = {p.path: p.message for p in caught.value.problems}
    assert problems == {
        "feeds.0.url": "the URL has no host",
        "feeds.1.url": "the URL's port is not a number from 0 to 65535",
        "feeds.2.url": "the URL holds a space",
        "channels.h1.url": "the URL has no host",
        "channels.h2.url": "the URL's port is not a number from 0 to 65535",
    }
    assert all("s3cr3t" not in str(p) for p in caught.value.problems)
