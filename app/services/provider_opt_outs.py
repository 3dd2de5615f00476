"""Opt-outs that reach us from a provider instead of from the customer.

A customer can tell a provider to stop without our seeing it: a STOP texted to
the number while our webhook was down or before the shop used us, "Stop
promotions" tapped in WhatsApp, an address on SendGrid's unsubscribe or spam
report list. The provider then refuses or drops every send to them:

* Twilio answers a send with error 21610 ("attempt to send to unsubscribed
  recipient"), and may report it in a status callback;
* WhatsApp reports a failed status with error 131050 (the recipient stopped
  marketing messages from the business), or answers a send with it;
* SendGrid drops the mail with the reason "Unsubscribed Address" or
  "Spam Reporting Address".

Each is recorded as an explicit opt-out of that channel, as the customer's own
STOP would be. Without it the profile would still read "subscribed": the gate
would keep choosing the channel, every campaign would spend the customer's
daily cap and fatigue on a send that cannot arrive, and the consent history
would not show what the customer said. A later explicit opt-in (START, a
checkout's box, Shopify's consent update) lifts it as it lifts any opt-out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.models import ConsentRecord, Profile
from app.services.consent import OPTED_OUT, record_consent

TWILIO_UNSUBSCRIBED = "21610"
WHATSAPP_MARKETING_STOPPED = "131050"
SENDGRID_SUPPRESSED = frozenset({"Unsubscribed Address", "Spam Reporting Address"})


def is_twilio_opt_out(error_code: Any) -> bool:
    """Twilio's error code (a send's ``code``, a callback's ``ErrorCode``) says the recipient texted STOP."""
    return str(error_code or "").strip() == TWILIO_UNSUBSCRIBED


def is_whatsapp_opt_out(errors: Any) -> bool:
    """One of a WhatsApp status's (or send answer's) errors says the recipient stopped marketing."""
    items = errors if isinstance(errors, list) else [errors]
    return any(isinstance(e, dict) and str(e.get("code")) == WHATSAPP_MARKETING_STOPPED for e in items)


def is_sendgrid_opt_out(event: dict) -> bool:
    """A SendGrid drop because the address is on the account's unsubscribe or spam report list."""
    return event.get("event") == "dropped" and event.get("reason") in SENDGRID_SUPPRESSED


def record_opt_out(
    profile: Profile,
    channel: str,
    *,
    provider: str,
    at: dt.datetime,
    external_ref: str,
    identifier: str | None = None,
) -> ConsentRecord:
    """Record the provider's word as the customer's opt-out of ``channel`` (a replay adds nothing)."""
    return record_consent(
        profile,
        channel,
        OPTED_OUT,
        source=f"{provider}_opt_out",
        captured_at=at,
        explicit=True,
        identifier=identifier,
        external_ref=external_ref[:255],
    )
