"""``wirewatch feeds list|import|export``: the configured feeds, and OPML in and out.

``import`` writes the new feeds (those not configured yet) to a YAML file next to the
config — ``feeds/imported.yaml`` unless ``--to`` says otherwise — which the config
picks up through ``include`` (the shipped config includes ``feeds/*.yaml``). Only
http(s) feeds the config would accept are written; the others are named and skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import yaml
from pydantic import ValidationError

from monitor.config import Config, FeedConfig
from monitor.opml import OpmlError, read_opml, write_opml


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    @cli.group()
    def feeds() -> None:
        """List the feeds; import or export them as OPML."""

    @feeds.command("list")
    def list_() -> None:
        """The configured feeds (included files too)."""
        config = load()
        for feed in config.feeds:
            state = "" if feed.enabled else "  (disabled)"
            interval = config.feed_interval(feed)
            click.echo(f"{feed.display_name}\t{feed.url}\tevery {interval:g}s{state}")

    @feeds.command("import")
    @click.argument("opml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option(
        "--to",
        "target",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="YAML file to write (default: feeds/imported.yaml beside the config)",
    )
    def import_(opml: Path, target: Path | None) -> None:
        """Add the feeds of an OPML file (e.g. exported from another reader)."""
        config = load()
        try:
            entries = read_opml(opml.read_bytes())
        except OpmlError as exc:
            raise click.ClickException(f"{opml}: {exc}") from exc
        base = config.source.parent if config.source else Path.cwd()
        target = target or base / "feeds" / "imported.yaml"
        known = {feed.url for feed in config.feeds}
        existing: list[dict[str, object]] = []
        if target.exists():
            loaded = yaml.safe_load(target.read_text(encoding="utf-8")) or []
            existing = loaded if isinstance(loaded, list) else loaded.get("feeds", [])
            known |= {str(entry.get("url")) for entry in existing}
        entries, refused = _importable(entries)
        for url, why in refused:
            click.echo(f"skipped {url!r}: {why}", err=True)
        new = [entry for entry in entries if entry["url"] not in known]
        target.parent.mkdir(parents=True, exist_ok=True)
        header = f"# Feeds imported from {opml.name} by 'wirewatch feeds import'.\n"
        target.write_text(
            header + yaml.safe_dump(existing + new, sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
        skipped = len(entries) - len(new)
        click.echo(
            f"{len(new)} new feeds written to {target} ({skipped} already configured"
            + (f", {len(refused)} refused" if refused else "")
            + ")"
        )
        try:
            relative = target.resolve().relative_to(base.resolve())
        except ValueError:
            relative = None
        if relative is None or not any(relative.match(p) for p in config.include):
            click.echo(f'add it to the config: include: ["{relative or target}"]')

    @feeds.command()
    @click.option(
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="file to write (default: standard output)",
    )
    def export(output: Path | None) -> None:
        """Write the configured feeds as OPML 2.0."""
        config = load()
        base = config.source.parent if config.source else Path.cwd()
        # Other readers cannot resolve our relative file: URLs: write them absolute.
        feeds = [
            feed.model_copy(update={"url": _absolute_file_url(feed.url, base)})
            for feed in config.feeds
        ]
        document = write_opml(feeds)
        if output is None:
            sys.stdout.buffer.write(document)
        else:
            output.write_bytes(document)
            click.echo(f"wrote {output}")


def _absolute_file_url(url: str, base: Path) -> str:
    if not url.startswith("file:") or url.startswith("file:/"):
        return url
    return (base / url.removeprefix("file:")).resolve().as_uri()


def _importable(
    entries: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The entries a config would accept, and (url, why) for the others. Only http(s):
    an OPML file from elsewhere must not make wirewatch read local files (``file:``)."""
    kept, refused = [], []
    for entry in entries:
        url = str(entry["url"])
        if urlsplit(url).scheme not in ("http", "https"):
            refused.append((url, "only http and https feeds are imported"))
            continue
        try:
            FeedConfig.model_validate(entry)
        except ValidationError as exc:
            refused.append((url, "; ".join(error["msg"] for error in exc.errors())))
            continue
        kept.append(entry)
    return kept, refused
