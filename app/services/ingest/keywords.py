"""The opt-out and opt-in keywords a customer may text back, on SMS and WhatsApp alike.

A message that is exactly one keyword (any case, surrounding spaces ignored) changes
that channel's consent: STOP and its synonyms revoke it, START and UNSTOP restore it.
Anything else is a reply.
"""

from __future__ import annotations

from app.services.consent import OPTED_IN, OPTED_OUT

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "UNSTOP"})


def keyword(body: str | None) -> str | None:
    """``STOP``/``START``… when the whole message is one keyword (any case, spaces ignored)."""
    word = (body or "").strip().upper()
    return word if word in STOP_WORDS | START_WORDS else None


def consent_status(word: str) -> str:
    """The consent a keyword asks for: opted out for STOP and its synonyms, else opted in."""
    return OPTED_OUT if word in STOP_WORDS else OPTED_IN
