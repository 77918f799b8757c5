"""Feed lists: OPML import and export, and feed files included from the config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import FeedConfig
from monitor.config_loader import ConfigError, load_config
from monitor.opml import OpmlError, read_opml, write_opml

OPML = b"""<?xml version="1.0"?>
<opml version="1.0">
  <head><title>My reader</title></head>
  <body>
    <outline text="World">
      <outline text="Wire A" type="rss" xmlUrl="https://a.test/rss" category="wires,agencies"/>
      <outline text="Europe">
        <outline title="Wire B" text="b" type="rss" xmlUrl="https://b.test/atom"/>
      </outline>
    </outline>
    <outline text="Loose" type="rss" xmlUrl="https://c.test/feed.json" language="fr"/>
    <outline text="Duplicate of A" type="rss" xmlUrl="https://a.test/rss"/>
  </body>
</opml>
"""


def test_read_opml_keeps_folders_as_tags() -> None:
    assert read_opml(OPML) == [
        {"url": "https://a.test/rss", "name": "Wire A", "tags": ["World", "wires", "agencies"]},
        {"url": "https://b.test/atom", "name": "Wire B", "tags": ["World", "Europe"]},
        {"url": "https://c.test/feed.json", "name": "Loose", "language": "fr"},
    ]


@pytest.mark.parametrize(
    ("document", "reason"),
    [(b"<opml><body>", "not valid XML"), (b"<rss/>", "not OPML"), (b"<opml/>", "without")],
)
def test_read_opml_rejects_what_it_cannot_read(document: bytes, reason: str) -> None:
    with pytest.raises(OpmlError, match=reason):
        read_opml(document)


def test_export_then_import_round_trips() -> None:
    feeds = [
        FeedConfig(url="https://a.test/rss", name="A & B", tags=["world", "wire"]),
        FeedConfig(url="https://c.test/feed", language="de"),
    ]
    back = read_opml(write_opml(feeds))
    assert back == [
        {"url": "https://a.test/rss", "name": "A & B", "tags": ["world", "wire"]},
        {"url": "https://c.test/feed", "name": "https://c.test/feed", "language": "de"},
    ]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "feeds", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_feeds_import_writes_an_included_file_and_skips_known_feeds(tmp_path: Path) -> None:
    config = tmp_path / "wirewatch.yaml"
    config.write_text(
        'include: ["feeds/*.yaml"]\nfeeds:\n  - {url: "https://a.test/rss", name: Known}\n'
    )
    opml = tmp_path / "reader.opml"
    opml.write_bytes(OPML)
    done = cli(config, "import", str(opml))
    assert done.returncode == 0, done.stderr
    assert "2 new feeds" in done.stdout and "1 already configured" in done.stdout
    assert "add it to the config" not in done.stdout  # feeds/*.yaml includes it
    loaded = load_config(config)
    assert [feed.url for feed in loaded.feeds] == [
        "https://a.test/rss",
        "https://b.test/atom",
        "https://c.test/feed.json",
    ]
    again = cli(config, "import", str(opml))
    assert "0 new feeds" in again.stdout
    assert len(load_config(config).feeds) == 3
    exported = cli(config, "export")
    assert [e["url"] for e in read_opml(exported.stdout.encode())] == [
        "https://a.test/rss",
        "https://b.test/atom",
        "https://c.test/feed.json",
    ]


def test_feeds_import_skips_what_the_config_would_refuse_and_local_files(tmp_path: Path) -> None:
    """An OPML file from elsewhere: a javascript: link, local files and a URL without a
    host are named and skipped, so the written file keeps the config valid."""
    config = tmp_path / "wirewatch.yaml"
    config.write_text('include: ["feeds/*.yaml"]\nfeeds: []\n')
    opml = tmp_path / "hostile.opml"
    outlines = "".join(
        f'<outline text="f{n}" xmlUrl="{url}"/>'
        for n, url in enumerate(
            [
                "javascript:alert(1)",
                "file:///etc/passwd",
                "file:../../../etc/hostname",
                "http://",
                "https://ok.test/rss",
            ]
        )
    )
    opml.write_text(f'<opml version="2.0"><body>{outlines}</body></opml>')
    done = cli(config, "import", str(opml))
    assert done.returncode == 0, done.stderr
    assert "1 new feeds" in done.stdout and "4 refused" in done.stdout
    for url in ("javascript:alert(1)", "file:///etc/passwd", "http://"):
        assert f"skipped {url!r}" in done.stderr
    assert [feed.url for feed in load_config(config).feeds] == ["https://ok.test/rss"]


def test_errors_in_included_files_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "wires.yaml").write_text(
        '- {url: "https://x.test/rss"}\n- {url: "ftp://bad"}\n'
    )
    (tmp_path / "feeds" / "more.yaml").write_text(
        'feeds:\n  - {url: "https://y.test", intervall: 3}\n'
    )
    config = tmp_path / "wirewatch.yaml"
    config.write_text('include: ["feeds/*.yaml", "extra.yaml"]\nfeeds: []\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    rendered = [str(problem) for problem in caught.value.problems]
    assert rendered == [
        "line 1: include.1: no such file: 'extra.yaml'",
        "feeds/more.yaml line 2: feeds.0.intervall: unknown setting (check its spelling)",
        "feeds/wires.yaml line 2: feeds.2.url: unsupported URL scheme 'ftp': "
        "use http, https or file",
    ]


def test_an_empty_glob_is_fine(tmp_path: Path) -> None:
    config = tmp_path / "wirewatch.yaml"
    config.write_text('include: ["feeds/*.yaml"]\nfeeds: [{url: "https://a.test/rss"}]\n')
    assert len(load_config(config).feeds) == 1
