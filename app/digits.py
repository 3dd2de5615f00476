"""Whole numbers written as text: cursors, pages and ids read from requests, payloads and files,
and counts written for people (``counted``)."""

from __future__ import annotations

import re

ASCII_DIGITS = re.compile(r"[0-9]+")


def whole_number(text: str) -> int | None:
    """The number ``text`` writes in ASCII digits, else None.

    ``str.isdigit`` also says yes to "²", which ``int`` then refuses (a 500 where a 400 or a
    default belongs), and to "٣", which ``int`` reads as 3: text from outside is read here.
    """
    return int(text) if ASCII_DIGITS.fullmatch(text) else None


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 order``, ``2 orders``, ``1,204 deliveries`` (with ``plural`` given): a count as read aloud."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
