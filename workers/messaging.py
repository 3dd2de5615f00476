"""Jobs for sends: retry a waiting message, deliver a sent one to its provider."""

from __future__ import annotations

from app.config import provider_settings
from app.logging import get_logger
from app.services import messaging
from app.services.transports import TransportError

log = get_logger("workers.messaging")


def retry_message(message_id: int) -> int | None:
    """Make the next attempt of a waiting journey/time-sensitive message."""
    attempt = messaging.retry_message(message_id, config=provider_settings())
    return attempt.id if attempt else None


def send_campaign_chunk(chunk_id: int) -> int | None:
    """Gate and write one chunk of a campaign send; return how many were sent (None: already done)."""
    from app.services import campaign_sends

    result = campaign_sends.run_chunk(chunk_id, provider_settings())
    return result.sent if result is not None else None


def deliver_messages(message_ids: list[int]) -> int:
    """Hand a bulk send's chunk to the provider, message by message; return how many it accepted.

    A retryable failure re-raises for RQ after the messages before it were
    delivered; the retry skips those (each keeps its provider id).
    """
    return sum(deliver_message(message_id) is not None for message_id in message_ids)


def deliver_message(message_id: int) -> str | None:
    """Hand a sent message to the channel's provider; a retryable failure re-raises for RQ."""
    try:
        return messaging.deliver_message(message_id, provider_settings())
    except TransportError as exc:
        log.warning("delivery of message %s failed, will retry: %s", message_id, exc)
        raise
