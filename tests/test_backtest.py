"""``wirewatch backtest`` (offline on a JSON-lines file, and over Redis) and ``stories``."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from click.testing import CliRunner
from test_pipeline import enqueue
from test_stories import COPIES, OTHER, copy

from monitor.cli import cli
from monitor.config_loader import load_config
from workers.worker import run_worker

CONFIG = """
redis: {{url: "{url}", prefix: "{prefix}"}}
workers: {{ner: {{enabled: false}}, stories: {{threshold: 0.3}}}}
channels: {{console: {{type: log}}}}
rules:
  - {{id: harbour, query: 'Valletta AND harbour', channels: [console]}}
  - {{id: rates, query: 'rates', channels: [console]}}
"""


def write_config(tmp_path: Path, url: str = "redis://unused", prefix: str = "t:") -> Path:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(CONFIG.format(url=url, prefix=prefix))
    return path


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_offline_backtest_groups_copies_and_explains_matches(tmp_path: Path) -> None:
    lines = [
        {
            "title": title,
            "summary": summary,
            "url": f"{feed.rsplit('/', 1)[0]}/story",
            "feed": feed,
            "published": f"2026-11-26T10:0{n}:00Z",
        }
        for n, (feed, title, summary) in enumerate(COPIES)
    ]
    copied = {
        **lines[0],
        "feed": "https://mirror.example.net/rss",
        "published": "2026-11-26T11:00Z",
    }
    lines.append(copied)  # an exact copy, same URL
    lines.append({"title": OTHER.title, "summary": OTHER.summary, "feed": "Other"})
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    code, output = run(write_config(tmp_path), "backtest", "--items", str(items), "--json")
    assert code == 0, output
    rows = [json.loads(line) for line in output.splitlines()]
    assert len(rows) == 5
    assert len({row["story"] for row in rows[:4]}) == 1
    assert rows[4]["story"] != rows[0]["story"]
    assert rows[3]["duplicate_of"] == rows[0]["key"]
    assert rows[3]["story_outlets"] == ["example.com", "bbc.co.uk", "example.org", "example.net"]
    assert [m["rule"] for m in rows[0]["matches"]] == ["harbour"]
    [term, *_] = rows[0]["matches"][0]["terms"]
    assert term["field"] == "title" and term["text"] == "Valletta"
    assert [m["rule"] for m in rows[4]["matches"]] == ["rates"]
    # One rule only, for people.
    code, text = run(write_config(tmp_path), "backtest", "--items", str(items), "--rule", "rates")
    assert code == 0 and text.count("MATCH rates") == 1 and "MATCH harbour" not in text
    assert text.rstrip().endswith("5 item(s), 2 story(ies), 1 match(es)")


def test_backtest_since_reads_the_items_the_workers_kept(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    path = write_config(tmp_path, redis_url, prefix)
    config = load_config(path)
    enqueue(redis_client, config, [copy(0), copy(1)])
    enqueue(redis_client, config, [OTHER])
    run_worker(config, redis_url, burst=True)
    code, output = run(path, "backtest", "--since", "1h", "--rule", "harbour", "--json")
    assert code == 0, output
    rows = [json.loads(line) for line in output.splitlines()]
    assert len(rows) == 3
    assert [len(row["matches"]) for row in rows] == [1, 1, 0]
    assert rows[0]["story"] == rows[1]["story"] != rows[2]["story"]
    assert rows[0]["story_outlets"] == ["example.com", "bbc.co.uk"]
    code, text = run(path, "stories")
    assert code == 0, text
    assert text.count(" item(s)") == 2 and "2 outlet(s): example.com, bbc.co.uk; 2 item(s)" in text
    code, _ = run(path, "backtest", "--rule", "nope")
    assert code == 2
