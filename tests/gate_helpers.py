"""Builders shared by the gate and messaging tests."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from app.extensions import db
from app.models import Profile, Shop
from app.services.consent import record_consent
from app.services.identifiers import normalise
from app.services.resolution import resolve

CHANNELS = ("email", "sms", "whatsapp", "push")
TEXT = "Yes, send me news and offers. Unsubscribe any time."
# Wednesday 18 November 2026, noon in London (GMT): every channel is open.
NOON = dt.datetime(2026, 11, 18, 12, tzinfo=ZoneInfo("Europe/London")).astimezone(dt.UTC)


def make_profile(
    shop_id: int,
    email: str = "ann@shopper.test",
    phone: str | None = "+447911123456",
    *,
    timezone: str | None = "Europe/London",
    consents=CHANNELS,
    seen_at: dt.datetime = NOON - dt.timedelta(days=30),
) -> Profile:
    """A profile with an email (and phone), opted in on ``consents``; committed."""
    shop = db.session.get(Shop, shop_id)
    idents = [normalise("email", email)] + ([normalise("phone", phone, "GB")] if phone else [])
    profile = resolve(shop, idents, source="test", seen_at=seen_at)
    profile.timezone = timezone
    for channel in consents:
        record_consent(profile, channel, "opted_in", source="checkout", captured_at=seen_at, text=TEXT)
    db.session.commit()
    return profile
