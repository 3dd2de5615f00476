"""A WhatsApp id as the phone number the customer's other records hold.

WhatsApp names a customer by ``wa_id``, the digits of their number as the
account was made, and keeps two numberings their countries have since left:

* Mexico: a mobile as 52, 1 and ten digits. Mexico dropped the 1 in 2019, so
  Shopify, a checkout and an SMS opt-in hold +52 and the ten digits.
* Brazil: a mobile whose account is older than the ninth digit (added 2012–2016)
  as 55, the two-digit area code and eight digits starting 6–9; the number is
  now 9 and those eight. Landlines (eight digits starting 2–5) are left alone.

Without this a STOP from such a customer was stored against a raw number
nobody held, and they stayed opted in.
"""

from __future__ import annotations


def wa_phone(wa_id: object) -> str:
    """``+<digits>`` of a WhatsApp id (or a ``+``-number a provider copied from one), renumbered."""
    digits = str(wa_id).strip().lstrip("+")
    if digits.startswith("521") and len(digits) == 13 and digits.isdigit():
        digits = "52" + digits[3:]
    elif digits.startswith("55") and len(digits) == 12 and digits.isdigit() and digits[4] in "6789":
        digits = digits[:4] + "9" + digits[4:]
    return "+" + digits
