"""A WhatsApp id as the phone number the customer's other records hold.

WhatsApp names a customer by ``wa_id``, the digits of their number as the
account was made, and keeps two numberings their countries have since left:

* Mexico: a mobile as 52, 1 and ten digits. Mexico dropped the 1 in 2019, so
  Shopify, a checkout and an SMS opt-in hold +52 and the ten digits.
* Brazil: a mobile whose account is older than the ninth digit (added 2012–2016)
  as 55, the two-digit area code and eight digits starting 6–9; the number is
  now 9 and those eight. Landlines (eight digits starting 2–5) are left alone.

Without this a STOP from such a customer was stored against a raw number
nobody held, and they stayed opted in. A shop's records may still hold the
old Brazilian number (an order placed before the change): a number the shop
holds as WhatsApp sent it is kept as sent.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from app.extensions import db
from app.models import Identifier


def wa_phone(wa_id: object, shop_id: int | None = None) -> str:
    """``+<digits>`` of a WhatsApp id (or a ``+``-number a provider copied from one), renumbered;
    with ``shop_id``, kept as sent when the shop holds it so and not renumbered."""
    text = str(wa_id).strip()
    digits = re.sub(r"[\s().-]", "", text).lstrip("+")
    if not digits.isdigit():
        return "+" + text.lstrip("+")
    renumbered = digits
    if digits.startswith("521") and len(digits) == 13:
        renumbered = "52" + digits[3:]
    elif digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        renumbered = digits[:4] + "9" + digits[4:]
    if (
        renumbered != digits
        and shop_id is not None
        and _held(shop_id, "+" + digits, "+" + renumbered) == {"+" + digits}
    ):
        return "+" + digits
    return "+" + renumbered


def _held(shop_id: int, *phones: str) -> set[str]:
    """Which of these E.164 phones the shop holds."""
    return set(
        db.session.scalars(
            sa.select(Identifier.value).where(
                Identifier.shop_id == shop_id, Identifier.kind == "phone", Identifier.value.in_(phones)
            )
        )
    )
