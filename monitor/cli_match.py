"""``wirewatch match``: try one rule on a text, a file or a URL, and show why it matched.

Input: ``--text`` (a title, with ``--summary``), ``--file`` (a feed file: each entry;
else a text file: first line title, the rest summary) or ``--url`` (a feed: each entry;
a web page: its title and description, or first paragraphs). Entities are extracted
as the workers do (the configured NER), then the rule is evaluated
(``workers.api.match_rule``). Output: per item, the satisfied clauses (an ``about:``
clause with its similarity: ``similarity=0.63``) and the spans that matched, or the
top-level clauses that did not hold; ``--json`` prints one JSON object per item, one a
line, with ``similarity`` (of the ``about:`` clause; null without one).

Exit status: 0 when the rule matched at least one item, 1 when it matched none,
2 on errors (unknown rule, bad query, unreadable file or URL, nothing to match).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import click

from monitor.config import Config
from monitor.fetch import FetchLimits, fetch
from monitor.items import Item
from monitor.normalise import html_to_text
from monitor.parse import FeedRef, parse_feed
from monitor.poll_errors import FeedParseError, PollError

if TYPE_CHECKING:
    from workers.api import ItemVerdict

_MAX_PARAGRAPHS = 3


def register(cli: click.Group, load: Callable[[], Config]) -> None:
    """Add the ``match`` command to ``cli``."""

    @cli.command("match")
    @click.option("--rule", "rule_id", required=True, help="the rule's id")
    @click.option("--text", help="a headline to match")
    @click.option("--summary", default="", help="with --text: the item's summary")
    @click.option("--file", "path", type=click.Path(dir_okay=False), help="a text or feed file")
    @click.option("--url", help="a web page or a feed to fetch")
    @click.option("--lang", default=None, help="the items' language, for lang: clauses")
    @click.option("--json", "as_json", is_flag=True, help="one JSON object per item")
    def match(
        rule_id: str,
        text: str | None,
        summary: str,
        path: str | None,
        url: str | None,
        lang: str | None,
        as_json: bool,
    ) -> None:
        """Run one rule on a text, file or URL; exit 0 matched, 1 no match, 2 error."""
        from workers.api import QueryError, match_rule

        if sum(source is not None for source in (text, path, url)) != 1:
            _fail("give exactly one of --text, --file, --url")
        config = load()
        if text is not None:
            items = [_item("text", text, summary)]
        elif path is not None:
            items = _from_file(Path(path))
        else:
            assert url is not None
            items = asyncio.run(_from_url(url))
        if lang:
            items = [_with_language(item, lang) for item in items]
        if not items:
            _fail("nothing to match: no items found")
        try:
            verdicts = match_rule(config, rule_id, items)
        except KeyError:
            known = ", ".join(rule.id for rule in config.rules) or "none"
            _fail(f"unknown rule {rule_id!r} (rules: {known})")
        except QueryError as exc:
            _fail(str(exc))
        for verdict in verdicts:
            click.echo(json.dumps(_as_json(verdict)) if as_json else _as_text(verdict))
        sys.exit(0 if any(verdict.match for verdict in verdicts) else 1)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _item(key: str, title: str, summary: str = "", url: str = "", feed: str = "") -> Item:
    return Item(
        key=key, feed_url=feed or "cli:", feed_name=feed, url=url, title=title, summary=summary
    )


def _with_language(item: Item, lang: str) -> Item:
    return Item.from_json({**item.to_json(), "language": lang})


def _from_file(path: Path) -> list[Item]:
    try:
        body = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc}")
    if body.lstrip()[:1] in (b"<", b"{"):
        try:
            feed = FeedRef(url=path.resolve().as_uri(), name=path.name)
            return list(parse_feed(body, feed=feed, content_type=None, base_url=feed.url).items)
        except FeedParseError:
            pass  # markup or JSON that is not a feed: read it as text
    title, _, rest = body.decode("utf-8", errors="replace").strip().partition("\n")
    return [_item(str(path), title.strip(), " ".join(rest.split()))]


async def _from_url(url: str) -> list[Item]:
    limits = FetchLimits(total_timeout=20.0, max_bytes=5_000_000)
    try:
        async with aiohttp.ClientSession() as session:
            result = await fetch(session, url, limits=limits)
    except (PollError, aiohttp.ClientError, TimeoutError) as exc:
        _fail(f"cannot fetch {url}: {exc}")
    body, final = result.body or b"", result.url
    content_type = (result.content_type or "").lower()
    if "html" not in content_type:
        try:
            feed = FeedRef(url=final)
            parsed = parse_feed(body, feed=feed, content_type=result.content_type, base_url=final)
            return list(parsed.items)
        except FeedParseError:
            pass  # not a feed after all: read it as a page
    page = _Page()
    page.feed(body.decode("utf-8", errors="replace"))
    summary = page.description or " ".join(page.paragraphs[:_MAX_PARAGRAPHS])
    return [_item(final, page.title.strip(), html_to_text(summary), url=final)]


class _Page(HTMLParser):
    """A page's ``<title>``, meta/og description and its first paragraphs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.description = ""
        self.paragraphs: list[str] = []
        self._in: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): value or "" for name, value in attrs}
        if tag == "meta" and not self.description:
            name = (values.get("name") or values.get("property") or "").lower()
            if name in ("description", "og:description"):
                self.description = values.get("content", "").strip()
        elif tag in ("title", "p") and self._in is None:
            self._in, self._text = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag != self._in:
            return
        text = " ".join("".join(self._text).split())
        if tag == "title" and not self.title:
            self.title = text
        elif tag == "p" and text:
            self.paragraphs.append(text)
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._text.append(data)


def _as_json(verdict: ItemVerdict) -> dict[str, Any]:
    match = verdict.match
    return {
        "item": {"title": verdict.item.title, "url": verdict.item.url},
        "matched": match is not None,
        "rule": match.rule_id if match else None,
        "clauses": list(match.clauses) if match else [],
        "similarity": match.similarity if match else None,
        "terms": [term.to_json() for term in match.terms] if match else [],
        "unmet": list(verdict.unmet),
        "entities": [entity.to_json() for entity in verdict.entities],
    }


def _as_text(verdict: ItemVerdict) -> str:
    match, title = verdict.match, verdict.item.title or "(no title)"
    if match is None:
        unmet = "; ".join(verdict.unmet) or "the query as a whole"
        return f"no match: {title}\n  not satisfied: {unmet}"
    lines = [f"match {match.rule_id}: {title}"]
    lines += [f"  clause  {clause}" for clause in match.clauses]
    lines += [
        f"  {term.field:<8}[{term.start}:{term.end}] {term.text!r}  ({term.term})"
        for term in match.terms
    ]
    return "\n".join(lines)
