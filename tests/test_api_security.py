"""API security: loopback by default, a token anywhere else, constant-time checks, and
no secret in the API, the page or the logs."""

from __future__ import annotations

from pathlib import Path

import click
import httpx
import pytest
import redis
import structlog
from apiserver import ApiThread
from click.testing import CliRunner
from test_api import load_text, raise_seed_alert

from monitor.api_security import (
    ApiSecurityError,
    Scrubber,
    api_token,
    authorised,
    check_exposure,
    is_loopback,
)
from monitor.cli_serve import register
from monitor.config import Config
from monitor.config_loader import parse_config

TOKEN = "s3cr3t-api-token-0123456789"
SECRETS = {
    "webhook url path": "T0K3Nsecretpath",
    "webhook key": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
    "header": "Bearer-HeaderSecret-42",
    "smtp password": "smtp-PASSWORD-77",
    "private feed password": "hunter2pass",
    "private feed key": "abc123xyz",
    "api token": TOKEN,
}

PRIVATE_FEED = (
    f"https://user:{SECRETS['private feed password']}@private.test/f"
    f"?apikey={SECRETS['private feed key']}"
)


def secret_config(
    prefix: str, folder: Path, host: str = "127.0.0.1", token: str | None = TOKEN
) -> Config:
    extra = f"""
  mail: {{type: email, to: ["a@example.org"], from: "w@example.org",
          smtp: {{host: localhost, password: "{SECRETS["smtp password"]}"}}}}
  signed: {{type: webhook, url: "https://hooks.example.org/x", secret: "{SECRETS["webhook key"]}",
            headers: {{Authorization: "{SECRETS["header"]}"}}}}
api: {{host: "{host}"{f', token: "{token}"' if token else ""}}}
"""
    return load_text(_config_text(prefix) + extra, folder)


def _config_text(prefix: str) -> str:
    return f"""
redis: {{prefix: "{prefix}"}}
delivery: {{retry: {{attempts: 1, first_delay: 0.01, jitter: 0}}}}
feeds:
  - {{url: "{PRIVATE_FEED}", name: "Private"}}
rules:
  - {{id: r1, query: 'China', channels: [console, ops, mail, signed]}}
channels:
  console: {{type: log}}
  ops: {{type: webhook, url: "http://127.0.0.1:9/hook/{SECRETS["webhook url path"]}"}}
"""


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("api.example.org", False),
    ],
)
def test_loopback_is_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposed_address_needs_a_token_of_some_length() -> None:
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", TOKEN)
    with pytest.raises(ApiSecurityError, match="without a token"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ApiSecurityError, match="too short"):
        check_exposure("127.0.0.1", "short")


def test_token_from_config_or_environment(prefix: str, tmp_path: Path) -> None:
    assert api_token(secret_config(prefix, tmp_path, token=None), env={}) is None
    assert (
        api_token(
            secret_config(prefix, tmp_path, token=None), env={"WIREWATCH_API_TOKEN": "x" * 20}
        )
        == "x" * 20
    )
    assert (
        api_token(secret_config(prefix, tmp_path), env={"WIREWATCH_API_TOKEN": "y" * 20}) == TOKEN
    )
    empty = parse_config('api: {token: "${WIREWATCH_API_TOKEN:-}"}', "t.yaml", {})
    assert empty.api.token is None


def test_authorised_compares_the_bearer_token_only() -> None:
    assert authorised(f"Bearer {TOKEN}", TOKEN) and authorised(f"bearer {TOKEN}", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "):
        assert not authorised(header, TOKEN)


def test_server_refuses_to_start_exposed_without_a_token(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    config = secret_config(prefix, tmp_path, host="0.0.0.0", token=None)
    server = ApiThread(config, redis_url, host="0.0.0.0")
    with pytest.raises(ApiSecurityError, match=r"refusing to serve the API on '0\.0\.0\.0'"):
        server.start()
    server.stop()


def test_serve_command_explains_the_refusal(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = click.Group()
    register(cli, lambda: secret_config(prefix, tmp_path, host="0.0.0.0", token=None))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.delenv("WIREWATCH_API_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "without a token" in result.output and "api.token" in result.output


def test_token_is_required_everywhere_but_public_paths(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    with ApiThread(secret_config(prefix, tmp_path), redis_url) as api:
        assert httpx.get(f"{api.url}/healthz").status_code == 200
        assert httpx.get(f"{api.url}/").status_code == 200  # the page asks for the token
        for path in ("/api/alerts", "/api/feeds", "/api/alerts/stream", "/metrics"):
            refused = httpx.get(f"{api.url}{path}", headers={"Authorization": "Bearer wrong"})
            assert refused.status_code == 401, path
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert "wrong" not in refused.text
        ok = httpx.get(f"{api.url}/api/alerts", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200


def test_no_secret_in_the_api_the_page_or_the_logs(
    prefix: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    config = secret_config(prefix, tmp_path)
    assert "**********" in repr(config.channels["signed"]) and "**********" in repr(config.api)
    for name, secret in SECRETS.items():
        if "feed" not in name:  # feed URLs are plain settings; the API masks them itself
            assert secret not in repr(config), name
    raise_seed_alert(config, redis_url, redis_client)  # ops fails: a dead letter
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with structlog.testing.capture_logs() as logs, ApiThread(config, redis_url) as api:
        bodies = {}
        for path in (
            "/",
            "/app.js",
            "/style.css",
            "/healthz",
            "/readyz",
            "/api/feeds",
            "/api/rules",
            "/api/rules/hits",
            "/api/channels",
            "/api/alerts",
            "/api/dead",
            "/api/stories",
        ):
            response = httpx.get(f"{api.url}{path}", headers=auth)
            assert response.status_code in (200, 503), path
            bodies[path] = response.text
        httpx.get(
            f"{api.url}/api/alerts?token={TOKEN}", headers={"Authorization": f"Bearer {TOKEN}x"}
        )
    assert httpx.Response(200, text=bodies["/api/dead"]).json()["items"], "expected a dead letter"
    channels = httpx.Response(200, text=bodies["/api/channels"]).json()["items"]
    assert {c["name"]: c["type"] for c in channels} == {
        "console": "log",
        "mail": "email",
        "ops": "webhook",
        "signed": "webhook",
    }
    assert all(set(c) == {"name", "type", "min_severity", "digest"} for c in channels)
    everything = "\n".join(bodies.values()) + "\n" + repr(logs)
    for name, secret in SECRETS.items():
        assert secret not in everything, f"the {name} leaked"
    assert any(entry["event"] == "api_request" for entry in logs)


def test_scrubber_masks_every_secret_of_the_config(prefix: str, tmp_path: Path) -> None:
    config = secret_config(prefix, tmp_path)
    scrub = Scrubber(config, TOKEN, extra=["redispass"])
    ops_url = config.channels["ops"].url.get_secret_value()  # type: ignore[union-attr]
    values = [ops_url, SECRETS["webhook key"], SECRETS["header"], SECRETS["smtp password"]]
    text = " ".join([*values, TOKEN, "redispass", "plain"])
    assert scrub(text).split() == ["**********"] * 6 + ["plain"]
