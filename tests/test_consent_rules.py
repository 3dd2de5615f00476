"""Consent history rules: append-only, no silent re-subscribe, global unsubscribe."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.errors import ValidationFailed
from app.models import ConsentRecord
from app.services.consent import channel_states, record_consent, unsubscribe_all
from tests.gate_helpers import NOON, TEXT, make_profile

T = [NOON + dt.timedelta(hours=h) for h in range(6)]


def test_import_never_lifts_a_later_opt_out(db, shop):
    profile = make_profile(shop.id, consents=("email",))
    record_consent(profile, "email", "opted_out", source="sendgrid", captured_at=T[1])
    record_consent(profile, "email", "opted_in", source="import", captured_at=T[2], text=TEXT, explicit=False)
    assert channel_states(profile)["email"] == "opted_out"
    record_consent(profile, "email", "opted_in", source="popup", captured_at=T[3], text=TEXT)
    assert channel_states(profile)["email"] == "opted_in"


def test_import_can_record_a_first_opt_in(db, shop):
    profile = make_profile(shop.id, consents=())
    record_consent(profile, "sms", "opted_in", source="import", captured_at=T[0], text=TEXT, explicit=False)
    assert channel_states(profile)["sms"] == "opted_in"


def test_global_unsubscribe_turns_every_channel_off_and_needs_per_channel_opt_in(db, shop):
    profile = make_profile(shop.id)
    unsubscribe_all(profile, source="api", captured_at=T[1])
    assert set(channel_states(profile).values()) == {"opted_out"}
    assert profile.globally_unsubscribed
    record_consent(profile, "sms", "opted_in", source="keyword", captured_at=T[2], text="START")
    assert channel_states(profile) == {
        "email": "opted_out",
        "sms": "opted_in",
        "whatsapp": "opted_out",
        "push": "opted_out",
    }
    assert not profile.globally_unsubscribed


def test_history_is_append_only_and_replays_add_nothing(db, shop):
    profile = make_profile(shop.id, consents=())
    for _ in range(2):
        record_consent(profile, "sms", "opted_out", source="twilio", captured_at=T[0], external_ref="SM1")
    db.session.commit()
    rows = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentRecord))
    assert rows == 1


def test_naive_capture_time_is_refused(db, shop):
    profile = make_profile(shop.id, consents=())
    with pytest.raises(ValidationFailed):
        record_consent(profile, "sms", "opted_out", source="api", captured_at=dt.datetime(2026, 1, 1))
