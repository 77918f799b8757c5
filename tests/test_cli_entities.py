"""``wirewatch entities``: JSON lines in, one JSON line of entities out per input line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import cli


def run(tmp_path: Path, stdin: str, ner: str = "{}", *args: str) -> tuple[int, list[str], str]:
    config = tmp_path / "wirewatch.yaml"
    config.write_text(f"workers: {{ner: {ner}}}\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "entities", *args], input=stdin)
    return result.exit_code, result.stdout.splitlines(), result.stderr


def test_one_line_out_per_line_in_with_offsets_and_canonical_names(tmp_path: Path) -> None:
    texts = [
        "Russia sought China military aid for Ukraine war, says US\nThe U.S. said so.",
        "Chinese spokesman Zhao Lijian spoke in Beijing.",
        "nothing here",
    ]
    stdin = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    code, lines, _ = run(tmp_path, stdin, "{}", "--batch-size", "2")
    assert code == 0
    assert len(lines) == 3
    outputs = [json.loads(line)["entities"] for line in lines]
    for text, entities in zip(texts, outputs, strict=True):
        for e in entities:
            assert text[e["start"] : e["end"]] == e["text"]
            assert {"text", "label", "canonical", "start", "end"} <= e.keys()
    first = {(e["text"], e["label"], e["canonical"]) for e in outputs[0]}
    assert ("US", "GPE", "United States") in first
    assert ("U.S.", "GPE", "United States") in first
    assert ("Chinese", "NORP", "China") in {
        (e["text"], e["label"], e["canonical"]) for e in outputs[1]
    }
    assert outputs[2] == []


def test_bad_lines_get_an_error_line_and_the_run_goes_on(tmp_path: Path) -> None:
    stdin = 'not json\n{"text": "Moscow"}\n\n["a list"]\n{"text": 3}\n{"text": "Paris"}\n'
    code, lines, err = run(tmp_path, stdin)
    assert code == 1
    assert "3 bad input line(s)" in err
    outputs = [json.loads(line) for line in lines]
    assert len(outputs) == 5  # the blank line is skipped
    assert outputs[0]["error"].startswith("line 1: not JSON")
    assert outputs[1]["entities"][0]["text"] == "Moscow"
    assert outputs[2]["error"] == 'line 4: expected an object with a string "text"'
    assert outputs[3]["error"].startswith("line 5:")
    assert outputs[4]["entities"][0]["canonical"] == "Paris"


def test_the_configured_ner_is_used(tmp_path: Path) -> None:
    stdin = json.dumps({"text": "The envoy said Xi met the press in Rome."}) + "\n"
    code, lines, _ = run(
        tmp_path, stdin, '{model: no_such_model_here, aliases: {"Xi Jinping": ["Xi"]}}'
    )
    assert code == 0
    names = {e["text"]: e["canonical"] for e in json.loads(lines[0])["entities"]}
    assert names["Xi"] == "Xi Jinping"


def test_disabled_ner_prints_empty_lists(tmp_path: Path) -> None:
    code, lines, _ = run(tmp_path, '{"text": "Russia"}\n', "{enabled: false}")
    assert (code, lines) == (0, ['{"entities": []}'])
