"""The opt-out and opt-in keywords a customer may text back, on SMS and WhatsApp alike.

A message that is exactly one keyword (any case, surrounding spaces ignored) changes
that channel's consent: STOP and its synonyms revoke it, START and UNSTOP restore it.
Anything else is a reply.
"""

from __future__ import annotations

from typing import Any

from app.models import Profile, Shop
from app.services.consent import OPTED_IN, OPTED_OUT, record_consent
from app.services.ingest.common import record_event

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "UNSTOP"})


def keyword(body: str | None) -> str | None:
    """``STOP``/``START``… when the whole message is one keyword (any case, spaces ignored)."""
    word = (body or "").strip().upper()
    return word if word in STOP_WORDS | START_WORDS else None


def consent_status(word: str) -> str:
    """The consent a keyword asks for: opted out for STOP and its synonyms, else opted in."""
    return OPTED_OUT if word in STOP_WORDS else OPTED_IN


def apply_keyword(
    shop: Shop,
    profile: Profile | None,
    channel: str,
    word: str,
    reference: dict[str, str],
    common: dict[str, Any],
) -> None:
    """Put the keyword on the timeline and change ``channel``'s consent, once per message.

    Args:
        reference: the provider's name for the message (``{"message_sid": "SM…"}``), kept on the
            event and, as the consent record's external reference, making a replay add nothing.
        common: ``record_event``'s source, external id, time, identifiers (``found``) and delivery.
    """
    stored = record_event(
        shop,
        profile,
        type=f"{channel}.keyword",
        channel=channel,
        properties={"keyword": word, **reference},
        **common,
    )
    if stored is not None and profile is not None:
        found = common.get("found") or ()
        record_consent(
            profile,
            channel,
            consent_status(word),
            source="keyword",
            captured_at=common["occurred_at"],
            explicit=True,
            identifier=found[0].value if found else None,
            external_ref=next(iter(reference.values()))[:255],
        )
