"""Whole numbers written as text: cursors, pages and ids from requests, payloads and files."""

from __future__ import annotations

import re

ASCII_DIGITS = re.compile(r"[0-9]+")


def whole_number(text: str) -> int | None:
    """The number ``text`` writes in ASCII digits, else None.

    ``str.isdigit`` also says yes to "²", which ``int`` then refuses (a 500 where a 400 or a
    default belongs), and to "٣", which ``int`` reads as 3: text from outside is read here.
    """
    return int(text) if ASCII_DIGITS.fullmatch(text) else None
