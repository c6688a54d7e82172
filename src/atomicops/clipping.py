"""Cutting long text for a message, only between words.

A secret is masked where it appears whole (engine/secrets.py); a cut inside one would leave a
fragment no redactor can recognise. So text is cut at whitespace, and a word too long to keep
whole is left out rather than cut. (A secret holding whitespace can still be split there.)
"""

from __future__ import annotations

import re

MARK = "..."


def head(text: str, limit: int) -> str:
    """The start of ``text``, at most ``limit`` characters, ``...`` where it was cut."""
    if len(text) <= limit:
        return text
    kept = text[: max(limit - len(MARK), 0)]
    if not text[len(kept)].isspace():
        last_space = re.search(r"\s\S*\Z", kept)
        kept = kept[: last_space.start() + 1] if last_space else ""
    return kept + MARK


def tail(text: str, limit: int) -> str:
    """The end of ``text``, at most ``limit`` characters, ``...`` where it was cut."""
    if len(text) <= limit:
        return text
    kept = text[len(text) - max(limit - len(MARK), 0):]
    if not text[len(text) - len(kept) - 1].isspace():
        first_space = re.search(r"\s", kept)
        kept = kept[first_space.start():] if first_space else ""
    return MARK + kept
