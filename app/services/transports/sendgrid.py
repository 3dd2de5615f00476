"""SendGrid v3 ``POST /v3/mail/send``: the email adapter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.services.transports import Outbound
from app.services.transports.http import post

DEFAULT_BASE_URL = "https://api.sendgrid.com"


@dataclass(frozen=True)
class SendGridTransport:
    """Sends email through SendGrid; the ``X-Message-Id`` header is the provider id."""

    api_key: str
    sender: str
    base_url: str = DEFAULT_BASE_URL
    name: str = "sendgrid"

    def send(self, message: Outbound) -> str | None:
        """POST one mail; ``c360_message_id`` rides along as a custom arg for the event webhook."""
        payload = message.payload
        body = {
            "personalizations": [{"to": [{"email": message.recipient}]}],
            "from": {"email": self.sender},
            "subject": payload.get("subject") or "(no subject)",
            "content": [{"type": "text/plain", "value": payload.get("text") or " "}],
            "custom_args": {"c360_message_id": str(message.message_id)},
        }
        _, headers, _ = post(
            f"{self.base_url.rstrip('/')}/v3/mail/send",
            headers={"Authorization": f"Bearer {self.api_key}"},
            json_body=body,
        )
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get("x-message-id")


def from_config(config: Mapping[str, Any]) -> SendGridTransport | None:
    """The adapter when ``C360_SENDGRID_API_KEY`` and ``C360_SENDGRID_FROM`` are set."""
    key, sender = config.get("C360_SENDGRID_API_KEY"), config.get("C360_SENDGRID_FROM")
    if not key or not sender:
        return None
    return SendGridTransport(key, sender, config.get("C360_SENDGRID_BASE_URL") or DEFAULT_BASE_URL)
