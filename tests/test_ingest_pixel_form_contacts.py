"""Only the visitor's own contact fields of a submitted form link the browser.

Any field whose name mentioned "email" or "phone" was taken as the visitor's identity: a
refer-a-friend form linked the shopper's browser to the friend, and a gift card's recipient
email made a profile for the recipient.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Event
from app.services.ingest.form_fields import contact_kind
from tests.ingest_support import fixture, ishop_fixture, post_pixel, profile_of
from workers.ingest import drain_shop

ishop = ishop_fixture


def form_event(event_id: str, client_id: str, elements: list[dict], form_id: str = "form") -> dict:
    event = fixture("pixel/form_submitted_exit_intent.json")
    event.update(id=event_id, clientId=client_id)
    event["data"]["element"] = {"id": form_id, "elements": elements}
    return event


def checkout(event_id: str, client_id: str, email: str) -> dict:
    event = fixture("pixel/checkout_completed.json")
    event.update(id=event_id, clientId=client_id, timestamp="2026-10-03T18:41:03.000Z")
    event["data"]["checkout"].update(email=email, phone=None)
    return event


def form_identifiers(event_id: str) -> dict:
    db.session.expire_all()
    return db.session.scalar(sa.select(Event.identifiers).where(Event.external_id == event_id))


def test_a_refer_a_friend_form_leaves_the_browser_with_the_shopper_who_later_checks_out(client, ishop):
    refer = form_event(
        "refer-1",
        "c-shopper",
        [
            {"name": "friend_name", "type": "text", "value": "Rita"},
            {"name": "friend_email", "type": "email", "value": "referee@example.com"},
        ],
        form_id="refer-a-friend",
    )
    assert post_pixel(client, refer).status_code == 200
    assert post_pixel(client, checkout("co-1", "c-shopper", "shopper@example.com")).status_code == 200
    drain_shop(ishop.id)
    assert (
        profile_of(ishop, "web_client", "c-shopper").id
        == profile_of(ishop, "email", "shopper@example.com").id
    )
    assert profile_of(ishop, "email", "referee@example.com") is None
    assert "email" not in (form_identifiers("refer-1") or {})


def test_a_gift_card_recipient_makes_no_profile_for_the_recipient(client, ishop):
    gift = form_event(
        "gift-1",
        "c-giver",
        [
            {"name": "id", "type": "hidden", "value": "41"},
            {
                "id": "Recipient-email-template--1",
                "name": "properties[Recipient email]",
                "type": "email",
                "value": "giftee@example.com",
            },
            {"name": "properties[Recipient name]", "type": "text", "value": "Gina"},
            {"name": "properties[Message]", "type": "text", "value": "Happy birthday"},
        ],
        form_id="product-form",
    )
    assert post_pixel(client, gift).status_code == 200
    drain_shop(ishop.id)
    assert profile_of(ishop, "email", "giftee@example.com") is None
    assert profile_of(ishop, "web_client", "c-giver") is not None
    assert "email" not in (form_identifiers("gift-1") or {})


def test_a_popups_plain_email_and_phone_fields_still_link_the_browser(client, ishop):
    popup = form_event(
        "popup-1",
        "c-popup",
        [
            {"id": "popup-email", "name": "EMAIL", "type": "email", "value": "Pat@Example.com"},
            {"id": "popup-phone", "name": "phone_number", "type": "tel", "value": "07911 123456"},
        ],
        form_id="exit-intent",
    )
    assert post_pixel(client, popup).status_code == 200
    drain_shop(ishop.id)
    browser = profile_of(ishop, "web_client", "c-popup")
    assert profile_of(ishop, "email", "pat@example.com").id == browser.id
    assert profile_of(ishop, "phone", "+447911123456").id == browser.id
    assert form_identifiers("popup-1") == {
        "web_client": ["c-popup"],
        "email": ["pat@example.com"],
        "phone": ["+447911123456"],
    }


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ({"name": "email", "type": "email"}, "email"),
        ({"name": "Email", "type": "text"}, "email"),
        ({"name": "EMAIL"}, "email"),
        ({"name": "email_address"}, "email"),
        ({"name": "emailAddress"}, "email"),
        ({"name": "contact[email]", "type": "email"}, "email"),
        ({"name": "customer[email]", "type": "email"}, "email"),
        ({"name": "newsletter[email]"}, "email"),
        ({"name": "e-mail"}, "email"),
        ({"name": "subscribe_to_newsletter_email", "type": "email"}, "email"),
        ({"id": "popup-email", "type": "email"}, "email"),
        ({"type": "email"}, "email"),
        ({"name": "", "id": "", "type": "email"}, "email"),
        ({"name": "contact[phone]", "type": "tel"}, "phone"),
        ({"name": "customer[phone]"}, "phone"),
        ({"name": "phone"}, "phone"),
        ({"name": "phone_number"}, "phone"),
        ({"name": "PhoneNumber"}, "phone"),
        ({"name": "tel"}, "phone"),
        ({"name": "mobile"}, "phone"),
        ({"name": "sms", "type": "tel"}, "phone"),
        ({"type": "tel"}, "phone"),
        ({"id": "newsletter-sms", "type": "tel"}, "phone"),
    ],
)
def test_the_visitors_own_contact_fields_are_contacts(field, kind):
    assert contact_kind(field) == kind


@pytest.mark.parametrize(
    "field",
    [
        {"name": "friend_email", "type": "email"},
        {"name": "friendEmail", "type": "email"},
        {"name": "friends_email[]", "type": "email"},
        {"name": "referee_email", "type": "email"},
        {"name": "referral[email]", "type": "email"},
        {"name": "referrer_email", "type": "email"},
        {"name": "recipient_email", "type": "email"},
        {"name": "gift_email", "type": "email"},
        {"name": "giftee_phone", "type": "tel"},
        {"name": "to_email", "type": "email"},
        {"name": "email_to", "type": "email"},
        {"name": "to", "type": "email"},
        {"name": "receiver_phone", "type": "tel"},
        {"name": "their_email", "type": "email"},
        {"name": "partner_phone", "type": "tel"},
        {"name": "properties[Recipient email]", "type": "email"},
        {"name": "properties[Email]", "type": "email"},
        {"name": "properties[_phone]", "type": "tel"},
        {"name": "email", "id": "friend-email-2", "type": "email"},
        {"id": "Recipient-email-template--1", "type": "email"},
        {"name": "email", "type": "hidden"},
        {"name": "first_name", "type": "text"},
        {"name": "quantity", "type": "number"},
        {"name": "telescope_size", "type": "text"},
    ],
)
def test_fields_naming_someone_else_or_no_contact_are_not_contacts(field):
    assert contact_kind(field) is None


def test_a_forms_other_values_are_not_kept_only_its_contacts(client, ishop):
    """The inbox kept every typed value of a submitted form for good: a password, a message."""
    from app.models import WebhookDelivery
    from app.services.ingest import _json

    elements = [
        {"name": "email", "type": "email", "value": "visitor@shopper.test"},
        {"name": "password", "type": "password", "value": "hunter2"},
        {"name": "message", "type": "textarea", "value": "call me on 07700 900123"},
        {"name": "friend_email", "type": "email", "value": "friend@shopper.test"},
        {"name": "accepts_marketing", "type": "checkbox", "value": "on"},
    ]
    assert post_pixel(client, form_event("fs-min", "c-min", elements)).status_code == 200
    stored = _json(
        db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.external_id == "fs-min"))
    )
    kept = {f["name"]: f.get("value") for f in stored["data"]["element"]["elements"]}
    assert kept == {
        "email": "visitor@shopper.test",
        "password": None,
        "message": None,
        "friend_email": None,
        "accepts_marketing": None,
    }
    drain_shop(ishop.model.id)
    assert profile_of(ishop, "web_client", "c-min") == profile_of(ishop, "email", "visitor@shopper.test")


def test_a_form_event_with_no_fields_is_stored_as_sent(client, ishop):
    event = fixture("pixel/form_submitted_exit_intent.json")
    event.update(id="fs-empty", clientId="c-empty")
    event["data"] = {}
    assert post_pixel(client, event).status_code == 200


@pytest.mark.parametrize("kind", ["checkbox", "radio", "select-one", "submit", "button", "range"])
def test_a_field_the_visitor_ticks_or_picks_is_no_contact(kind):
    """A consent box named ``email_consent`` was taken for an email: its ``true`` refused the whole
    form event and the visitor's real address with it."""
    assert contact_kind({"name": "email_consent", "type": kind, "value": True}) is None
    assert contact_kind({"name": "sms_consent", "type": kind, "value": "on"}) is None


def test_a_consent_box_beside_the_email_keeps_the_form_and_links_the_browser(client, ishop):
    elements = [
        {"name": "email_consent", "type": "checkbox", "value": True},
        {"name": "email", "type": "email", "value": "boxed@shopper.test"},
    ]
    assert post_pixel(client, form_event("fs-box", "c-box", elements)).get_json().get("dead_lettered", 0) == 0
    drain_shop(ishop.model.id)
    assert profile_of(ishop, "web_client", "c-box") == profile_of(ishop, "email", "boxed@shopper.test")


def test_a_refused_form_event_is_kept_without_its_other_values(client, ishop):
    """A refused event is dead-lettered as sent, for a retry once the parser is fixed: its
    password and a friend's address were kept though a valid event's are blanked."""
    from app.models import WebhookDelivery
    from app.services.ingest import _json

    elements = [
        {"name": "email", "type": "email", "value": 7},  # what makes the event refused
        {"name": "password", "type": "password", "value": "hunter2"},
        {"name": "friend_email", "type": "email", "value": "friend@shopper.test"},
    ]
    batch = [fixture("pixel/page_viewed.json"), form_event("fs-bad", "c-bad", elements)]
    assert post_pixel(client, batch).get_json()["dead_lettered"] == 1
    dead = db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.status == "dead"))
    kept = {f["name"]: f.get("value") for f in _json(dead)["data"]["element"]["elements"]}
    assert kept == {"email": 7, "password": None, "friend_email": None}
