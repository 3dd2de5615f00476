"""The opt-out and opt-in keywords a customer may text back, on SMS and WhatsApp alike.

A message that is one keyword changes that channel's consent: STOP and its synonyms
revoke it, START and UNSTOP restore it. Anything else is a reply.

What counts as "one keyword" is read the way a person writes it, not byte for byte: case,
surrounding spaces, punctuation ("Stop!", "STOP."), invisible characters a phone adds and
full-width letters are ignored, and words written apart are one ("STOP ALL", "opt out",
"Opt-Out"). An opt-out may also carry courtesy ("Stop please", "please stop", "stop
texting me", WhatsApp's "Stop promotions" button): a customer who wrote that and was texted
again is exactly who this product must never message. A message that merely contains a
keyword ("Cancel my order 1001", "End of the day works") or a number ("Cancel #1001") is a
reply. A keyword said twice ("STOP STOP") or above a phone's signature line is one. Opting
back in is read strictly: only START or UNSTOP on its own (punctuation and case aside)
restores consent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from app.models import Profile, Shop
from app.services.consent import OPTED_IN, OPTED_OUT, record_consent
from app.services.ingest.common import record_event

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "UNSTOP"})
# Words around an opt-out that change nothing of what it asks.
COURTESY = frozenset(
    {"PLEASE", "PLS", "PLZ", "NOW", "THANKS", "THANK", "YOU", "ME", "IT", "THE", "ANY", "MORE"}
    | {"TEXTING", "TEXTS", "MESSAGING", "MESSAGES", "SENDING", "PROMOTIONS", "MARKETING"}  # "Stop promotions"
)
WORD = re.compile(r"[A-Z0-9]+")
SIGNATURE = re.compile(r"^\s*sent from my\b", re.IGNORECASE)  # "Sent from my iPhone" under the word


def keyword(body: str | None) -> str | None:
    """``STOP``/``START``… when the message is one keyword as a person writes it (see above)."""
    text = "".join(c for c in unicodedata.normalize("NFKC", body or "") if unicodedata.category(c) != "Cf")
    lines = [line for line in text.splitlines() if not SIGNATURE.match(line)]
    words = WORD.findall(" ".join(lines).upper())
    if any(w.isdigit() or not w.isalpha() for w in words):
        return None  # "Cancel #1001": an order, not a keyword
    word = "".join(words)
    if word in STOP_WORDS | START_WORDS:
        return word
    plain = [w for w in words if w not in COURTESY]
    if plain and plain.count(plain[0]) == len(plain) and plain[0] in STOP_WORDS:
        return plain[0]  # "STOP STOP", "Stop it", "Stop sending me messages"
    return "".join(plain) if "".join(plain) in STOP_WORDS else None


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
