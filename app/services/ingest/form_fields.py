"""Which fields of a submitted storefront form are the visitor's own email or phone.

A ``form_submitted`` pixel event carries every field of the form, and only the visitor's
own contact details may link their browser. Taking any field whose name mentioned "email"
or "phone" linked a shopper's browser to the friend named in a refer-a-friend form, and
made a profile for the recipient of a gift card.

The rule, in plain English, read from each field's ``name`` and ``id`` split into words
(at anything not a letter or digit, and between a lower-case letter and a capital):

1. A field that names someone else is never a contact, whatever its type: one of its
   words is friend, refer… (referee, referral, referrer), recipient, gift… (giftee),
   receiver, partner or their, or "to" beside the contact word or alone (``friend_email``,
   ``email_to``, ``giftee_phone``); or it is a line-item property (``properties[…]``,
   such as a gift card's ``properties[Recipient email]``: it describes the item bought,
   never the buyer).
2. A field the visitor did not type is never a contact: a hidden one, a box they ticked or an
   option they picked (``email_consent`` as a checkbox), a button.
3. Otherwise the field is the visitor's email when one of its words is email or mail
   (``email``, ``EMAIL``, ``email_address``, ``contact[email]``, ``customer[email]``,
   ``popup-email``), and their phone when one is phone, telephone, tel, mobile, cell or
   sms (``phone_number``, ``contact[phone]``, ``customer[phone]``, ``tel``).
4. A field whose name and id say neither is the visitor's email when its type is
   ``email``, and their phone when its type is ``tel`` (a popup's input with no name).

A field that is not a contact is neither linked nor stored among the event's identifiers.
"""

from __future__ import annotations

import re
from typing import Any

OTHER_PERSON_PREFIXES = ("friend", "refer", "recipient", "gift", "receiver", "partner")
OTHER_PERSON_WORDS = frozenset({"their"})
EMAIL_WORDS = frozenset({"mail"})
PHONE_PREFIXES = ("phone", "telephone", "mobile", "cellphone")
PHONE_WORDS = frozenset({"tel", "cell", "sms"})
BY_TYPE = {"email": "email", "tel": "phone"}
# Inputs whose value the visitor did not type (a ticked box, a picked option, a button's label):
# an ``email_consent`` box says yes or no, never an address.
NOT_TYPED = frozenset(
    {"hidden", "checkbox", "radio", "select", "select-one", "select-multiple", "submit", "button", "reset"}
    | {"range", "color", "file", "image", "date", "datetime-local", "month", "week", "time"}
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def contact_kind(field: dict[str, Any]) -> str | None:
    """``"email"`` or ``"phone"`` when a form field is the visitor's own, else None."""
    name = _text(field.get("name"))
    kind = _text(field.get("type")).strip().lower()
    if name.strip().lower().startswith("properties[") or kind in NOT_TYPED:
        return None
    words = [_words(name), _words(_text(field.get("id")))]
    if any(_names_someone_else(w) for w in words):
        return None
    for each in words:
        found = {_contact_word(w) for w in each} - {None}
        if found:
            return "email" if "email" in found else "phone"
    return BY_TYPE.get(kind)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _words(text: str) -> list[str]:
    return [w for w in _SEPARATORS.split(_CAMEL.sub(" ", text).lower()) if w]


def _contact_word(word: str) -> str | None:
    if word.startswith("email") or word in EMAIL_WORDS:
        return "email"
    if word.startswith(PHONE_PREFIXES) or word in PHONE_WORDS:
        return "phone"
    return None


def _names_someone_else(words: list[str]) -> bool:
    for index, word in enumerate(words):
        if word.startswith(OTHER_PERSON_PREFIXES) or word in OTHER_PERSON_WORDS:
            return True
        # "to" is someone else beside the contact word (``email_to``, ``to_phone``) or alone,
        # not elsewhere in a name (``subscribe_to_newsletter_email`` is the visitor's).
        beside = words[max(index - 1, 0) : index] + words[index + 1 : index + 2]
        if word == "to" and (len(words) == 1 or any(_contact_word(w) for w in beside)):
            return True
    return False
