"""``wirewatch match``: text, files and URLs through one rule; output and exit codes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
channels: {{console: {{type: log}}}}
workers: {{ner: {{enabled: {ner}}}}}
term_sets:
  aid: [aid, assistance, weapons, "military aid", drone*]
rules:
  - id: design
    query: 'China AND ("military aid" OR @aid) AND (Russia OR Moscow)'
    channels: [console]
  - {{id: people, query: 'person:"Xi Jinping" AND gpe:Russia', channels: [console]}}
  - {{id: english, query: 'lang:en AND China', channels: [console]}}
"""


def run(tmp_path: Path, *args: str, ner: bool = False) -> tuple[int, str, str]:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(CONFIG.format(ner="true" if ner else "false"))
    result = CliRunner().invoke(cli, ["--config", str(path), "match", *args])
    return result.exit_code, result.stdout, result.stderr


def test_text_that_matches_shows_clauses_and_spans(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, "--rule", "design", "--text", "China sends drones to Russia")
    assert code == 0
    assert out.splitlines()[0] == "match design: China sends drones to Russia"
    assert "  clause  @aid" in out
    assert "  title   [12:18] 'drones'  (drone*)" in out


def test_text_that_does_not_match_says_what_failed(tmp_path: Path) -> None:
    code, out, _ = run(
        tmp_path, "--rule", "design", "--text", "China and Russia", "--summary", "sign a gas deal"
    )
    assert code == 1
    assert "no match: China and Russia" in out
    assert 'not satisfied: "military aid" OR @aid' in out


def test_json_output(tmp_path: Path) -> None:
    code, out, _ = run(
        tmp_path, "--rule", "design", "--text", "Moscow", "--summary", "China aid", "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["matched"] is True
    assert result["clauses"] == ["China", "@aid", "Moscow"]
    assert {"term": "aid", "field": "summary", "start": 6, "end": 9, "text": "aid"} in result[
        "terms"
    ]


def test_entities_are_extracted_first(tmp_path: Path) -> None:
    code, out, _ = run(
        tmp_path,
        "--rule",
        "people",
        "--text",
        "Xi Jinping arrives in Russia for talks with Putin",
        "--json",
        ner=True,
    )
    result = json.loads(out)
    assert code == 0, result
    assert 'person:"Xi Jinping"' in result["clauses"]
    assert any(t["field"] == "entity" and t["text"] == "Russia" for t in result["terms"])


def test_lang_option(tmp_path: Path) -> None:
    assert run(tmp_path, "--rule", "english", "--text", "China")[0] == 1
    assert run(tmp_path, "--rule", "english", "--text", "China", "--lang", "en-GB")[0] == 0


def test_feed_file_gives_one_verdict_per_entry(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, "--rule", "design", "--file", str(ROOT / "seeds/feeds/world.xml"))
    assert code == 0
    verdicts = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(verdicts) == 15
    assert verdicts[0].startswith("match design: Russia sought China military aid")
    matched = [line for line in verdicts if line.startswith("match ")]
    assert (
        matched[1] == "match design: China and Russia pledge food aid to drought-hit Horn of Africa"
    )
    assert len(matched) == 2  # @aid takes "food aid": the design query does not


def test_text_file_first_line_is_the_title(tmp_path: Path) -> None:
    text = tmp_path / "item.txt"
    text.write_text("Moscow asks for help\nChina weighs\nmilitary aid.\n")
    code, out, _ = run(tmp_path, "--rule", "design", "--file", str(text), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["item"]["title"] == "Moscow asks for help"
    assert ("military aid", "summary") in {(t["term"], t["field"]) for t in result["terms"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rule", "nope", "--text", "x"], "unknown rule 'nope' (rules: design, people, english)"),
        (["--rule", "design"], "give exactly one of --text, --file, --url"),
        (["--rule", "design", "--text", "x", "--url", "http://127.0.0.1:9/"], "exactly one"),
        (["--rule", "design", "--file", "/nonexistent/file"], "cannot read"),
        (["--rule", "design", "--url", "http://127.0.0.1:9/"], "cannot fetch"),
    ],
)
def test_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = run(tmp_path, *args)
    assert code == 2
    assert message in err


PAGE = b"""<html><head><title>China to send drones to Russia</title>
<meta name="description" content="Beijing weighs military aid for Moscow."></head>
<body><p>Ignored when a description exists.</p></body></html>"""
FEED = (ROOT / "seeds/feeds/world.xml").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body, kind = (FEED, "application/rss+xml") if self.path == "/feed" else (PAGE, "text/html")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_url_of_a_page_uses_title_and_description(tmp_path: Path, site: str) -> None:
    code, out, _ = run(tmp_path, "--rule", "design", "--url", f"{site}/story", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["item"]["title"] == "China to send drones to Russia"
    assert ("military aid", "summary") in {(t["term"], t["field"]) for t in result["terms"]}


def test_url_of_a_feed_gives_each_entry(tmp_path: Path, site: str) -> None:
    code, out, _ = run(tmp_path, "--rule", "design", "--url", f"{site}/feed", "--json")
    assert code == 0
    assert len(out.splitlines()) == 15
