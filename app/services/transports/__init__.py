"""Outbound delivery behind one interface.

Every allowed send is first recorded in the outbox (``OutboxItem``), in
the same transaction as the gate's reservation — the default transport,
and a transactional outbox: a crash can never send without a log row or
log a send that was never handed over. When a provider is configured for
the channel, a job hands the outbox item to its adapter after commit
(``workers.messaging.deliver_message``), which speaks the provider's
real send API over HTTP and stores the provider's message id.

Configuration (environment or app config, read by ``provider_for``):

* email: ``C360_SENDGRID_API_KEY``, ``C360_SENDGRID_FROM``, ``C360_SENDGRID_BASE_URL``
* sms: ``C360_TWILIO_ACCOUNT_SID``, ``C360_TWILIO_API_TOKEN``, ``C360_TWILIO_FROM``, ``C360_TWILIO_BASE_URL``
* whatsapp: ``C360_WHATSAPP_TOKEN``, ``C360_WHATSAPP_PHONE_NUMBER_ID``, ``C360_WHATSAPP_BASE_URL``
* ``C360_PUBLIC_URL``: the app's public address, from which each send names its status webhook
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Outbound:
    """One message as a transport sees it: who, on which channel, what."""

    message_id: int
    channel: str
    recipient: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    # Our webhook for this message's delivery statuses, when the app's public address is known
    # (``C360_PUBLIC_URL``): Twilio reports per message to the URL a send names.
    status_url: str | None = None


class TransportError(Exception):
    """The provider refused or could not be reached; ``retryable`` says whether to try again.

    ``answer`` is the provider's parsed error body, where it sent one; ``opted_out`` says the
    provider refused because the recipient told it to stop (``provider_opt_outs``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        answer: Any = None,
        opted_out: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.answer = answer
        self.opted_out = opted_out

    def as_opt_out(self, message: str) -> TransportError:
        """This refusal read as the recipient's opt-out with the provider: never retried."""
        return TransportError(
            message, status=self.status, retryable=False, answer=self.answer, opted_out=True
        )


class Transport(Protocol):
    """Hands one message to a provider and returns the provider's message id."""

    name: str

    def send(self, message: Outbound) -> str | None: ...


def provider_for(channel: str, config: Mapping[str, Any]) -> Transport | None:
    """The provider adapter configured for ``channel``, or None (the outbox alone)."""
    from app.services.transports import sendgrid, twilio, whatsapp

    builders = {"email": sendgrid.from_config, "sms": twilio.from_config, "whatsapp": whatsapp.from_config}
    builder = builders.get(channel)
    return builder(config) if builder else None
