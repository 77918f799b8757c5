"""OPML in and out: the feed lists of other readers, and ours for them.

:func:`read_opml` turns an OPML document into plain feed entries (url, name, tags) —
every ``<outline>`` with an ``xmlUrl``, its folder names and ``category`` as tags.
:func:`write_opml` turns configured feeds into an OPML 2.0 document. Pure functions on
bytes; the CLI (``wirewatch feeds import|export``) does the file work.

The XML is parsed with the standard library's expat, which refuses entity expansion
attacks ("billion laughs") since expat 2.4; an OPML file is an operator's input anyway.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from monitor.config import FeedConfig


class OpmlError(ValueError):
    """Not an OPML document we can read; the message says why."""


def read_opml(data: bytes) -> list[dict[str, Any]]:
    try:
        root = ET.fromstring(data)  # noqa: S314 - see the module docstring
    except ET.ParseError as exc:
        raise OpmlError(f"not valid XML: {exc}") from exc
    if root.tag.lower() != "opml":
        raise OpmlError(f"not OPML: the document element is <{root.tag}>")
    body = root.find("body")
    if body is None:
        raise OpmlError("OPML without a <body>")
    feeds: dict[str, dict[str, Any]] = {}
    _walk(body, [], feeds)
    return list(feeds.values())


def _walk(element: ET.Element, folders: list[str], feeds: dict[str, dict[str, Any]]) -> None:
    for outline in element.findall("outline"):
        title = (outline.get("title") or outline.get("text") or "").strip()
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if url:
            categories = [
                part.strip()
                for raw in (outline.get("category") or "").split(",")
                for part in raw.split("/")
                if part.strip()
            ]
            entry: dict[str, Any] = {"url": url}
            if title:
                entry["name"] = title
            tags = list(dict.fromkeys([*folders, *categories]))
            if tags:
                entry["tags"] = tags
            if outline.get("language"):
                entry["language"] = outline.get("language")
            feeds.setdefault(url, entry)  # the first mention wins
        else:
            _walk(outline, [*folders, title] if title else folders, feeds)


def write_opml(feeds: Iterable[FeedConfig], title: str = "wirewatch feeds") -> bytes:
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC))
    body = ET.SubElement(root, "body")
    for feed in feeds:
        attributes = {"type": "rss", "text": feed.display_name, "title": feed.display_name}
        attributes["xmlUrl"] = feed.url
        if feed.tags:
            attributes["category"] = ",".join(feed.tags)
        if feed.language:
            attributes["language"] = feed.language
        ET.SubElement(body, "outline", attributes)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
