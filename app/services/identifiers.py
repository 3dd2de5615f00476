"""Normalising identifiers, and finding the profile that holds one.

Rules (the README repeats them):

* email: trimmed and lower-cased; anything without a single ``@`` and a
  dotted domain is not an email.
* phone: E.164 (``+447700900123``), parsed with the shop's country as the
  default region; a number that cannot be parsed is kept as ``raw_phone``
  (digits only) and never links anyone.
* shopify_customer: the numeric id as a string (``gid://shopify/Customer/7001``
  becomes ``7001``).
* web_client, amazon_buyer, ebay_user: as given, trimmed.
* any value longer than 320 characters once normalised is nobody's identifier.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
import sqlalchemy as sa

from app.digits import whole_number
from app.extensions import db
from app.models import Identifier, Profile, Shop
from app.tenancy import scoped

KINDS = ("shopify_customer", "email", "phone", "web_client", "amazon_buyer", "ebay_user")
# Trust order: a lower number wins when profiles conflict.
TRUST = {
    "shopify_customer": 0,
    "email": 1,
    "phone": 2,
    "amazon_buyer": 3,
    "ebay_user": 3,
    "web_client": 4,
    "raw_phone": 9,
}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Ident:
    """A normalised identifier: ``kind`` and ``value``."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def normalise_email(raw: str) -> str | None:
    """Lower-case and trim an email; None when it is not one."""
    value = (raw or "").strip().lower()
    return value if EMAIL_RE.match(value) else None


def normalise_phone(raw: str, default_region: str | None) -> Ident | None:
    """E.164 for a parseable phone, else a ``raw_phone`` that never links."""
    text = (raw or "").strip()
    if not text:
        return None
    return _parse_phone(text, (default_region or "US").upper())


@functools.lru_cache(maxsize=8192)
def _parse_phone(text: str, region: str) -> Ident | None:
    """``normalise_phone`` past its checks, remembered: a customer's phone comes back on every order,
    consent and reply, and parsing one costs tens of microseconds (``Ident`` is immutable, so shared)."""
    try:
        number = phonenumbers.parse(text, region)
        # "Possible" rather than "valid": numbers in ranges reserved for drama and
        # tests (UK 07700 900xxx) are real-looking inputs we must still link.
        if phonenumbers.is_possible_number(number):
            return Ident("phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    except phonenumbers.NumberParseException:
        pass
    digits = re.sub(r"\D", "", text)
    return Ident("raw_phone", digits) if digits else None


CUSTOMER_GID = "gid://shopify/Customer/"
MAX_VALUE = 320  # the longest identifier the identifiers table holds (an email's limit, and then some)


def normalise(kind: str, raw, default_region: str | None = None) -> Ident | None:
    """Normalise one identifier of ``kind``; None when nothing usable is left.

    A value longer than ``MAX_VALUE`` once normalised is nobody's: no email, phone or id is
    that long, and the row could not be stored.
    """
    ident = _normalise(kind, raw, default_region)
    return ident if ident is None or len(ident.value) <= MAX_VALUE else None


def _normalise(kind: str, raw, default_region: str | None) -> Ident | None:
    if raw is None:
        return None
    raw = str(raw)
    if kind == "email":
        value = normalise_email(raw)
        return Ident("email", value) if value else None
    if kind == "phone":
        return normalise_phone(raw, default_region)
    if kind == "shopify_customer":
        # A number, or Shopify's global id of a customer; an order's or a variant's id is no customer's.
        value = raw.strip()
        if value[: len(CUSTOMER_GID)].lower() == CUSTOMER_GID.lower():
            value = value[len(CUSTOMER_GID) :]
        return Ident(kind, value) if whole_number(value) is not None else None
    if kind in ("web_client", "amazon_buyer", "ebay_user"):
        value = raw.strip()
        return Ident(kind, value) if value else None
    raise ValueError(f"unknown identifier kind {kind!r}")


def live_profile(profile: Profile | None, *, fresh: bool = False) -> Profile | None:
    """Follow ``merged_into`` to the profile that survives today.

    ``fresh`` reads each step from the database, not from the session (under a lock
    taken after the session read them, a merge may have committed since).
    """
    seen = set()
    while profile is not None and profile.merged_into_id and profile.id not in seen:
        seen.add(profile.id)
        profile = db.session.get(Profile, profile.merged_into_id, populate_existing=fresh)
    return profile


def live_profiles(shop_id: int, profile_ids: Iterable[int]) -> dict[int, Profile]:
    """``live_profile`` for many ids at once: ``{asked id: live profile}``, absent ids left out.

    One read per step of the longest merge chain among them (usually one or two),
    where following each id alone would cost a read per profile.
    """
    asked = set(profile_ids)
    loaded: dict[int, Profile] = {}
    read: set[int] = set()
    todo = set(asked)
    while todo:
        for chunk in _id_chunks(todo):
            loaded.update(
                (p.id, p) for p in db.session.scalars(scoped(Profile, shop_id).where(Profile.id.in_(chunk)))
            )
        read |= todo
        todo = {p.merged_into_id for p in loaded.values() if p.merged_into_id} - read
    live = _follow_merges(asked, {pid: p.merged_into_id for pid, p in loaded.items()})
    return {asked_id: loaded[live_id] for asked_id, live_id in live.items()}


ID_CHUNK = 10_000  # ids per IN list: PostgreSQL takes at most 65,535 parameters in a statement


def live_ids(shop_id: int, profile_ids: Iterable[int]) -> dict[int, int]:
    """``live_profiles`` by id alone: ``{asked id: live profile id}``, absent ids left out.

    Reads ids and merge pointers only, so a count over every open candidate of a shop (tens of
    thousands of profiles) does not load them.
    """
    asked = set(profile_ids)
    merged_into: dict[int, int | None] = {}
    todo = set(asked)
    while todo:
        for chunk in _id_chunks(todo):
            stmt = scoped(Profile, shop_id, Profile.id, Profile.merged_into_id).where(Profile.id.in_(chunk))
            merged_into.update(db.session.execute(stmt).all())
        todo = {m for pid in todo if (m := merged_into.get(pid)) is not None and m not in merged_into}
    return _follow_merges(asked, merged_into)


def _id_chunks(ids: Iterable[int]):
    """``ids`` sorted, ``ID_CHUNK`` at a time: one IN list per statement."""
    ordered = sorted(ids)
    for start in range(0, len(ordered), ID_CHUNK):
        yield ordered[start : start + ID_CHUNK]


def _follow_merges(asked: set[int], merged_into: dict[int, int | None]) -> dict[int, int]:
    """``{asked id: live id}`` along the merge pointers read (``merged_into``); an id not read, or
    whose chain leads to one not read, is left out. A cycle stops where it comes round."""
    out = {}
    for profile_id in asked:
        current, seen = (profile_id if profile_id in merged_into else None), set()
        while current is not None and merged_into.get(current) is not None and current not in seen:
            seen.add(current)
            current = merged_into[current]
        if current is not None and current in merged_into:
            out[profile_id] = current
    return out


def lookup_kind(kind: str) -> str | None:
    """The identifier kind a lookup names (``shopify`` is short for ``shopify_customer``); None if none."""
    kind = {"shopify": "shopify_customer"}.get(kind, kind)
    return kind if kind in KINDS else None


def contact_key(text: str | None, country: str | None) -> tuple[str, str] | None:
    """A contact as a source gave it (``email:Ann@X.com``, ``07700 900123``) as a normalised key."""
    text = (text or "").strip()
    if not text:
        return None
    kind, sep, value = text.partition(":")
    kind = lookup_kind(kind) if sep else None
    if kind is None:
        kind, value = ("email" if "@" in text else "phone"), text
    ident = normalise(kind, value, country) if kind in KINDS else None
    return (ident.kind, ident.value) if ident else None


def find_profile_by_identifier(shop: Shop, kind: str, raw: str) -> Profile | None:
    """The live profile holding ``kind:raw`` in ``shop``, or None.

    A phone that cannot be parsed finds nobody: profiles keep it as text (``raw_phone``),
    but it never finds or links anyone, and two people may have typed the same digits.
    """
    kind = lookup_kind(kind)
    if kind is None:
        return None
    ident = normalise(kind, raw, shop.country)
    return None if ident is None or ident.kind == "raw_phone" else profile_holding(shop.id, ident)


def profile_holding(shop_id: int, ident: Ident) -> Profile | None:
    """The live profile holding the normalised ``ident`` in the shop, or None: a lookup, not a sighting."""
    profile_id = db.session.scalar(
        sa.select(Identifier.profile_id).where(
            Identifier.shop_id == shop_id, Identifier.kind == ident.kind, Identifier.value == ident.value
        )
    )
    if profile_id is None:
        return None
    return live_profile(db.session.get(Profile, profile_id))
