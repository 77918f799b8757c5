"""The ``about:`` clause: parsing, thresholds, explanations, the CLI, and life without
the model (a config error naming the extra, never a crash at match time).

The model is the real one (wordllama's, shipped in its wheel: the dev extra installs
it). Similarities quoted in comments were measured with it; the pairs are chosen with
wide margins around the thresholds they test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
import redis
from click.testing import CliRunner
from receivers import WebhookReceiver
from rq import Queue
from rq.serializers import JSONSerializer

from monitor.cli import cli
from monitor.config_loader import parse_config
from monitor.items import Item, batch_payload
from monitor.keys import Keys
from workers import resources
from workers.evaluate import Document
from workers.match import RuleSet, explain_text
from workers.query import About, And, Not, Or, QueryError, Term, parse_query
from workers.semantic import DEFAULT_THRESHOLD, embed
from workers.worker import run_worker

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "China supplying weapons to Russia"
# ~0.67 with TOPIC: no word in common but "Russia".
ARMS = (
    "US warns Chinese companies over arms deliveries to Russian army",
    "Sanctions target suppliers accused of sending military equipment to Russia.",
)
# ~0.0 with TOPIC.
TELESCOPE = (
    "Space telescope finishes aligning its mirror segments",
    "Engineers say the observatory will start science work in the summer.",
)
# ~0.34 with TOPIC: China, Russia and aid, but not weapons.
FOOD_AID = (
    "China and Russia pledge food aid to drought-hit Horn of Africa",
    "The two countries will send grain and medical teams to Ethiopia and Somalia.",
)


def similarity(text: str, title: str, summary: str) -> float:
    topic, item = embed([text, f"{title}\n{summary}"])
    return float(topic @ item)


def test_the_pairs_keep_their_margins() -> None:
    """The other tests rely on these distances; a new model must keep them."""
    assert similarity(TOPIC, *ARMS) > DEFAULT_THRESHOLD + 0.15
    assert similarity(TOPIC, *FOOD_AID) < DEFAULT_THRESHOLD - 0.08
    assert similarity(TOPIC, *TELESCOPE) < 0.15


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'about:"{TOPIC}"', About(TOPIC)),
        (f'about: "{TOPIC}"~0.55', About(TOPIC, 0.55)),
        (f'about:"{TOPIC}"~.6', About(TOPIC, 0.6)),
        (
            f'about:"{TOPIC}"~0.5 AND NOT Taiwan',
            And((About(TOPIC, 0.5), Not(Term("Taiwan", "taiwan")))),
        ),
        (f'Ukraine OR about:"{TOPIC}"', Or((Term("Ukraine", "ukrain"), About(TOPIC)))),
    ],
)
def test_parse(text: str, expected: object) -> None:
    query = parse_query(text)
    assert query.root == expected
    assert parse_query(str(query)).root == expected  # rendering parses back


def test_render_is_canonical() -> None:
    assert str(parse_query(f'about: "{TOPIC}"~0.50')) == f'about:"{TOPIC}"~0.5'
    assert str(parse_query('about:"say \\"no\\""')) == 'about:"say \\"no\\""'


def test_about_alone_is_anchored_but_not_under_not() -> None:
    parse_query(f'China AND NOT about:"{TOPIC}"')
    with pytest.raises(QueryError, match="matches on absence alone"):
        parse_query(f'NOT about:"{TOPIC}"')


def test_default_threshold_matches_related_and_not_unrelated() -> None:
    rules = RuleSet([("r", parse_query(f'about:"{TOPIC}"', "r"))])
    assert [m.rule_id for m in rules.match_fields(*ARMS)] == ["r"]
    assert rules.match_fields(*TELESCOPE) == []
    assert rules.match_fields(*FOOD_AID) == []  # the words are there, the subject is not


def test_threshold_is_the_rules() -> None:
    measured = similarity(TOPIC, *ARMS)
    below = f"{measured - 0.05:.2f}"
    above = f"{min(measured + 0.05, 1):.2f}"
    assert explain_text(parse_query(f'about:"{TOPIC}"~{below}'), *ARMS) is not None
    assert explain_text(parse_query(f'about:"{TOPIC}"~{above}'), *ARMS) is None
    # A low threshold takes what the default leaves out.
    assert explain_text(parse_query(f'about:"{TOPIC}"~0.2'), *FOOD_AID) is not None


def test_explain_reports_the_similarity() -> None:
    rules = RuleSet([("r", parse_query(f'about:"{TOPIC}"~0.5 AND Russia', "r"))])
    [match] = rules.match_fields(*ARMS)
    assert match.similarity == pytest.approx(similarity(TOPIC, *ARMS), abs=1e-3)
    assert match.clauses == (f'about:"{TOPIC}"~0.5 similarity={match.similarity:.2f}', "Russia")
    assert [term.text for term in match.terms] == ["Russia"]  # about: has no span


def test_combines_with_boolean_clauses() -> None:
    rules = RuleSet(
        [
            ("and", parse_query(f'about:"{TOPIC}" AND sanctions', "and")),
            ("not", parse_query(f'about:"{TOPIC}" -sanctions', "not")),
            ("or", parse_query(f'about:"{TOPIC}" OR telescope', "or")),
        ]
    )
    assert [m.rule_id for m in rules.match_fields(*ARMS)] == ["and", "or"]
    [match] = rules.match_fields(*TELESCOPE)
    assert (match.rule_id, match.clauses, match.similarity) == ("or", ("telescope",), None)
    assert rules.match_fields("Arms deliveries to Russia", "Chinese firms ship weapons") != []


def test_about_only_rules_bypass_the_prefilter_and_items_are_embedded_once() -> None:
    words = [(f"w{i}", parse_query(f"word{i} AND other{i}", f"w{i}")) for i in range(50)]
    about = [
        ("a1", parse_query(f'about:"{TOPIC}"', "a1")),
        ("a2", parse_query('about:"weapons for Moscow"~0.3', "a2")),
        ("gated", parse_query(f'about:"{TOPIC}" AND telescope', "gated")),
    ]
    rules = RuleSet([*words, *about])
    assert rules.prefilter.always == [50, 51]  # a1 and a2; "gated" waits for its word
    document = Document(*ARMS)
    assert [m.rule_id for m in rules.match_document(document)] == ["a1", "a2"]
    first = document._vector
    assert first is not None
    rules.match_document(document)
    assert document._vector is first  # one embedding per item, whatever the rules
    # No candidate rule asks: the item is never embedded.
    only_gated = RuleSet([*words, about[2]])
    untouched = Document(*ARMS)
    assert only_gated.match_document(untouched) == []
    assert untouched._vector is None


def test_and_checks_its_words_before_embedding_the_item() -> None:
    rules = RuleSet([("r", parse_query(f'about:"{TOPIC}" AND (telescope OR mirror)', "r"))])
    document = Document(*ARMS)
    assert rules.match_every_rule(document) == []  # no prefilter: the AND itself decides
    assert document._vector is None


def test_a_text_with_no_known_word_has_similarity_zero() -> None:
    assert explain_text(parse_query('about:"zzzqqq"~0.01'), "", "") is None


CONFIG = f"""
channels: {{console: {{type: log}}}}
workers: {{ner: {{enabled: false}}}}
rules:
  - {{id: arms, query: 'about:"{TOPIC}"~0.5 AND (Russia OR Moscow)', channels: [console]}}
"""


def cli_match(tmp_path: Path, *args: str) -> tuple[int, str]:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(CONFIG)
    result = CliRunner().invoke(cli, ["--config", str(path), "match", "--rule", "arms", *args])
    return result.exit_code, result.stdout


def test_cli_match_shows_the_similarity(tmp_path: Path) -> None:
    code, out = cli_match(tmp_path, "--text", ARMS[0], "--summary", ARMS[1])
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"match arms: {ARMS[0]}"
    assert lines[1].startswith(f'  clause  about:"{TOPIC}"~0.5 similarity=0.6')
    code, out = cli_match(tmp_path, "--text", ARMS[0], "--summary", ARMS[1], "--json")
    result = json.loads(out)
    assert code == 0
    assert result["similarity"] == pytest.approx(similarity(TOPIC, *ARMS), abs=1e-3)


def test_cli_no_match_says_how_close_it_came(tmp_path: Path) -> None:
    code, out = cli_match(tmp_path, "--text", FOOD_AID[0], "--summary", FOOD_AID[1])
    assert code == 1
    assert f'not satisfied: about:"{TOPIC}"~0.5 similarity=0.3' in out


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HOME": str(tmp_path), **env},
        timeout=60,
        check=False,
    )


def test_without_the_package_config_validation_names_the_extra(tmp_path: Path) -> None:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(CONFIG)
    code = (
        "import sys; sys.modules['wordllama'] = None\n"  # makes `import wordllama` fail
        "from monitor.cli import main\n"
        f"sys.argv = ['wirewatch', '--config', {str(path)!r}, 'check']\n"
        "main()\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "rules.0.query" in done.stderr
    assert "rule arms: invalid query at position 0: about: needs wordllama" in done.stderr
    assert "pip install 'wirewatch[semantic]'" in done.stderr


def test_the_model_loads_from_the_wheel_with_no_network(tmp_path: Path) -> None:
    """No download at run time (wordllama's own ``load()`` would fetch the tokenizer),
    and importing wordllama leaves the root logger as it was."""
    code = (
        "import logging, socket\n"
        "def refuse(*args, **kwargs): raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from workers.semantic import embed\n"
        "vectors = embed(['arms for Russia', 'weapons to Moscow'])\n"
        "print(round(float(vectors[0] @ vectors[1]), 2), logging.getLogger().handlers)\n"
    )
    done = _python(code, tmp_path, HF_HUB_OFFLINE="1")
    assert done.returncode == 0, done.stderr
    similarity_text, handlers = done.stdout.split(" ", 1)
    assert float(similarity_text) > 0.5
    assert handlers.strip() == "[]"
    assert not (tmp_path / ".cache").exists()


@pytest.fixture
def _forget_resources() -> Iterator[None]:
    yield
    resources._current = None


@pytest.mark.usefixtures("_forget_resources")
def test_an_alert_carries_the_similarity(
    redis_url: str, redis_client: redis.Redis, prefix: str, webhook_receiver: WebhookReceiver
) -> None:
    """The seed wire through a real worker: of its 15 items only the one about Russia
    seeking Chinese military aid (~0.66) passes ~0.55; the next is ~0.49."""
    config = parse_config(
        f"""
redis: {{prefix: "{prefix}"}}
workers: {{ner: {{enabled: false}}}}
channels:
  ops: {{type: webhook, url: "{webhook_receiver.url}", secret: "{webhook_receiver.secret}"}}
rules:
  - {{id: arms, query: 'about:"{TOPIC}"~0.55', channels: [ops]}}
""",
        "test.yaml",
        {},
    )
    parsed = feedparser.parse((ROOT / "seeds/feeds/world.xml").read_bytes())
    items = [
        Item(
            key=f"seed#{entry.id}",
            feed_url="https://seed.test/world.xml",
            feed_name="Seed wire",
            url=entry.link,
            title=entry.title,
            summary=entry.summary,
            guid=entry.id,
        )
        for entry in parsed.entries
    ]
    queue = Queue(Keys(prefix).items_queue, connection=redis_client, serializer=JSONSerializer)
    queue.enqueue("workers.jobs.process_batch", batch_payload(items))
    run_worker(config, redis_url, burst=True)
    [hook] = webhook_receiver.wait_for(1)
    body = hook.json
    assert body["item"]["title"].startswith("Russia sought China military aid")
    assert 0.6 < body["similarity"] < 0.75
    assert body["explain"] == [f'about:"{TOPIC}"~0.55 similarity={body["similarity"]:.2f}']
    assert len(webhook_receiver.received) == 1
