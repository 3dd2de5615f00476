"""Twilio Messages API ``POST /2010-04-01/Accounts/{sid}/Messages.json``: the SMS adapter."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.services.provider_opt_outs import is_twilio_opt_out
from app.services.transports import Outbound, TransportError
from app.services.transports.http import post

DEFAULT_BASE_URL = "https://api.twilio.com"


@dataclass(frozen=True)
class TwilioTransport:
    """Sends SMS through Twilio with HTTP basic auth; the message ``sid`` is the provider id."""

    account_sid: str
    auth_token: str
    sender: str
    base_url: str = DEFAULT_BASE_URL
    name: str = "twilio"

    def send(self, message: Outbound) -> str | None:
        """POST one SMS (form-encoded ``To``, ``From``, ``Body``)."""
        credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        try:
            _, _, body = post(
                f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json",
                headers={"Authorization": f"Basic {credentials}"},
                form=_form(self.sender, message),
            )
        except TransportError as exc:
            answer = exc.answer if isinstance(exc.answer, dict) else {}
            if is_twilio_opt_out(answer.get("code")):
                raise exc.as_opt_out("Twilio: the recipient texted STOP to this sender") from None
            raise
        if not isinstance(body, dict) or "sid" not in body:
            raise TransportError("Twilio answered without a message sid", retryable=False)
        return body["sid"]


def _form(sender: str, message: Outbound) -> dict[str, str]:
    form = {"To": message.recipient, "From": sender, "Body": message.payload.get("text") or ""}
    if message.status_url:  # delivered, undelivered, failed… come back to our webhook
        form["StatusCallback"] = message.status_url
    return form


def from_config(config: Mapping[str, Any]) -> TwilioTransport | None:
    """The adapter when the account sid, API token and sender are set."""
    sid, token = config.get("C360_TWILIO_ACCOUNT_SID"), config.get("C360_TWILIO_API_TOKEN")
    sender = config.get("C360_TWILIO_FROM")
    if not (sid and token and sender):
        return None
    return TwilioTransport(sid, token, sender, config.get("C360_TWILIO_BASE_URL") or DEFAULT_BASE_URL)
