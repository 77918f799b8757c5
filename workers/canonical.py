"""Canonical entity names (placeholder until the entities work lands)."""

from __future__ import annotations


def canonicalize(text: str, label: str = "") -> str:
    """The canonical name of ``text`` as an entity of ``label`` ("U.S." -> "United States")."""
    return text
