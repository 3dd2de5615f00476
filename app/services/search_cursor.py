"""The API search's page cursor: the last row's sort key and id, opaque to clients.

A cursor says where the previous page ended, not how many rows it skipped, so
profiles created or merged away between two fetches neither repeat nor hide a row.
It is URL-safe base64 of a small JSON object; clients pass it back untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from app.errors import DomainError

# The API lists newest first: the id is the whole sort key (ids only grow).
SORT = "recent"
MAX_ID = 2**63 - 1  # PostgreSQL's BIGINT: a larger id cannot exist and cannot be bound
MAX_LENGTH = 200
URLSAFE = re.compile(r"[A-Za-z0-9_-]+")
CURSOR_MESSAGE = "cursor is not a next_cursor this API returned; leave it out to start from the first page"


class BadCursor(DomainError):
    """The cursor is not one a page handed out: reading it as "the start" would loop a client for ever."""

    status = 400
    code = "bad_cursor"


def encode_cursor(last_id: int) -> str:
    """The cursor of the page that follows the row ``last_id``."""
    payload = json.dumps({"sort": SORT, "id": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id of the row the previous page ended on.

    Raises:
        BadCursor: ``cursor`` was not made by ``encode_cursor`` (a page number such as
            ``25``, ``-5`` or ``1e3``, edited text, or a cursor of another sort).
    """
    payload = _payload(cursor)
    last_id = payload.get("id") if isinstance(payload, dict) else None
    valid = (
        isinstance(payload, dict)
        and set(payload) == {"sort", "id"}
        and payload["sort"] == SORT
        and type(last_id) is int  # not True, not 3.0
        and 0 < last_id <= MAX_ID
    )
    if not valid:
        raise BadCursor(CURSOR_MESSAGE)
    return last_id


def _payload(cursor: str):
    if len(cursor) > MAX_LENGTH or not URLSAFE.fullmatch(cursor):
        raise BadCursor(CURSOR_MESSAGE)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(CURSOR_MESSAGE) from None
