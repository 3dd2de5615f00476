"""A message goes to the address its channel's consent was given for, not merely the oldest one.

A customer who changed email, or gave a work address in a popup besides the home address she
subscribed with, was mailed at her oldest address: one she replaced, or one that never
opted in. The address the channel's deciding opt-in names is used when the profile holds it;
otherwise the oldest, as before.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Message, OutboxItem, Profile
from app.services.consent import record_consent
from app.services.identifiers import normalise
from app.services.messaging import send_message
from app.services.messaging_bulk import send_many
from app.services.resolution import resolve
from tests.gate_helpers import NOON, TEXT


def two_email_customer(shop, consented: str | None) -> Profile:
    """Eve's account with her old address a year ago, with her new one last month; she opted in for
    ``consented``."""
    account = normalise("shopify_customer", "1601")
    old, new = normalise("email", "eve.old@mail.uk"), normalise("email", "eve.new@mail.uk")
    resolve(shop.model, [account, old], source="shopify", seen_at=NOON - dt.timedelta(days=365))
    profile = resolve(shop.model, [account, new], source="shopify", seen_at=NOON - dt.timedelta(days=30))
    at = NOON - dt.timedelta(days=29)
    record_consent(
        profile, "email", "opted_in", source="checkout", captured_at=at, text=TEXT, identifier=consented
    )
    db.session.commit()
    return profile


def outbox_recipients(db) -> list[str]:
    return list(db.session.scalars(sa.select(OutboxItem.recipient).order_by(OutboxItem.message_id)))


@pytest.mark.parametrize("named", ["eve.new@mail.uk", "email:Eve.New@mail.uk", " EVE.NEW@MAIL.UK "])
def test_a_send_goes_to_the_address_the_opt_in_names(db, shop, named):
    profile = two_email_customer(shop, named)
    assert send_message(shop.model, profile.id, "email", "manual", now=NOON).status == "sent"
    assert outbox_recipients(db) == ["eve.new@mail.uk"]


@pytest.mark.parametrize("named", [None, "someone.else@mail.uk", "+447700900123"])
def test_a_send_goes_to_the_oldest_address_when_the_opt_in_names_none_the_profile_holds(db, shop, named):
    profile = two_email_customer(shop, named)
    assert send_message(shop.model, profile.id, "email", "manual", now=NOON).status == "sent"
    assert outbox_recipients(db) == ["eve.old@mail.uk"]


def test_a_campaign_goes_to_the_address_the_opt_in_names(db, shop):
    profile = two_email_customer(shop, "eve.new@mail.uk")
    result = send_many(shop.model, [profile.id], "email", campaign_id="c-new", now=NOON)
    assert result.sent == 1
    assert db.session.scalar(sa.select(Message.status)) == "sent"
    assert outbox_recipients(db) == ["eve.new@mail.uk"]
