"""A batch's refused events, kept as dead deliveries rather than refusing the batch with them.

A SendGrid, pixel or WhatsApp batch is the provider's format even when one of its events
is not one we can use (an event type we do not know, a missing id). Answering such a batch
400 lost that event: SendGrid sent the batch again for 72 hours, the good events deduped,
and the broken one was refused each time and never reached the dead-letter queue. So each
refused event is stored as a ``dead`` delivery with its reason and its raw JSON, for an
operator to read (``c360 dlq list``, *Failed deliveries*), and the batch is answered 200.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.services.ingest.common import CheckedBatch

# Refused events keep ids of their own: a corrected event sent again later under the same
# provider id is a new delivery, not a duplicate of the dead one.
PREFIX = "refused:"
MAX_ID = 255  # webhook_deliveries.external_id
MAX_TOPIC = 80  # webhook_deliveries.topic
UNKNOWN_TOPIC = "unknown"


@dataclass(frozen=True)
class DeadLetter:
    """One refused event as it is stored: dead at once, with the reason it was refused."""

    topic: str
    external_id: str
    body: Any
    reason: str  # the row's last_error


def refused_id(body: Any, own_id: Any) -> str:
    """The external id of a refused event: its own id when it has a usable one, else a hash.

    ``refused:<own id>``, or ``refused:sha256:<hex>`` of its canonical JSON (sorted keys, no
    spaces) when its id is missing, not text, or too long: either way the provider's resend
    of the batch finds the same row and dead-letters nothing twice.
    """
    own = str(own_id).strip() if is_id(own_id) else ""
    if own and len(PREFIX) + len(own) <= MAX_ID:
        return PREFIX + own
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"{PREFIX}sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def provider_id(external_id: str) -> str:
    """A delivery's id without the ``refused:`` mark (the provider's own id, or the hash)."""
    return external_id.removeprefix(PREFIX)


def is_id(value: Any) -> bool:
    """Whether a provider's id field holds an id: text or a whole number (not a flag, an object)."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def topic_of(name: Any) -> str:
    """The topic a refused event is listed under: the name it gives itself, when it is text."""
    if isinstance(name, str) and name.strip():
        return name.strip()[:MAX_TOPIC]
    return UNKNOWN_TOPIC


def dead_letters(checked: CheckedBatch, describe: Callable[[Any], tuple[Any, Any, Any]]) -> list[DeadLetter]:
    """The batch's refused events as dead letters; ``describe(event)`` is ``(name, own id, body)``.

    The provider module knows where its events keep their name and id; anything may be
    missing or of the wrong type there (that may be why the event was refused).
    """
    out = []
    for event, reason in zip(checked.rejected, checked.refused, strict=True):
        name, own_id, body = describe(event)
        # Worded as the worker words a BadPayload it dead-letters, so the queue reads alike.
        error = f"BadPayload: {reason}"
        out.append(DeadLetter(topic_of(name), refused_id(body, own_id), body, error))
    return out


def field(event: Any, key: str) -> Any:
    """``event[key]`` when the event is an object, else None (a refused event may be anything)."""
    return event.get(key) if isinstance(event, dict) else None
