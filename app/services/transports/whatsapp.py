"""WhatsApp Cloud API ``POST /{phone-number-id}/messages``: the WhatsApp adapter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.services.provider_opt_outs import is_whatsapp_opt_out
from app.services.transports import Outbound, TransportError
from app.services.transports.http import post

DEFAULT_BASE_URL = "https://graph.facebook.com/v21.0"


@dataclass(frozen=True)
class WhatsAppTransport:
    """Sends WhatsApp messages through the Cloud API; ``messages[0].id`` is the provider id."""

    token: str
    phone_number_id: str
    base_url: str = DEFAULT_BASE_URL
    name: str = "whatsapp"

    def send(self, message: Outbound) -> str | None:
        """POST a template message when the payload names one, else a text message."""
        payload = message.payload
        body: dict[str, Any] = {"messaging_product": "whatsapp", "to": message.recipient.lstrip("+")}
        if payload.get("template"):
            body["type"] = "template"
            body["template"] = {
                "name": payload["template"],
                "language": {"code": payload.get("language", "en")},
            }
        else:
            body["type"] = "text"
            body["text"] = {"body": payload.get("text") or ""}
        try:
            _, _, answer = post(
                f"{self.base_url.rstrip('/')}/{self.phone_number_id}/messages",
                headers={"Authorization": f"Bearer {self.token}"},
                json_body=body,
            )
        except TransportError as exc:
            error = exc.answer.get("error") if isinstance(exc.answer, dict) else None
            if is_whatsapp_opt_out(error):
                raise exc.as_opt_out(
                    "WhatsApp: the recipient stopped marketing messages from this business"
                ) from None
            raise
        try:
            return answer["messages"][0]["id"]
        except (TypeError, KeyError, IndexError):
            raise TransportError("WhatsApp answered without a message id", retryable=False) from None


def from_config(config: Mapping[str, Any]) -> WhatsAppTransport | None:
    """The adapter when the access token and phone number id are set."""
    token, number_id = config.get("C360_WHATSAPP_TOKEN"), config.get("C360_WHATSAPP_PHONE_NUMBER_ID")
    if not (token and number_id):
        return None
    return WhatsAppTransport(token, number_id, config.get("C360_WHATSAPP_BASE_URL") or DEFAULT_BASE_URL)
