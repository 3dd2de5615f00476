"""Reading the gate's arguments from the database: the shop's policy, each profile's facts.

Bulk by design: an audience of any size costs a handful of queries per
chunk (profiles with their consent for the channel, recent sends, and
phones only where nothing else names a time zone). One profile costs two
round trips.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentState, Identifier, Message, Profile, Shop
from app.services.bulk_sql import id_in
from app.services.gate import CHANNELS, FACTS_LOOKBACK, GatePolicy, ProfileFacts
from app.services.shop_settings import effective_settings
from app.services.timezones import resolve_zone

CHUNK = 5000


def load_policy(shop: Shop) -> GatePolicy:
    """The shop's gate policy from its effective settings."""
    return GatePolicy.from_settings(effective_settings(shop))


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _profiles(shop_id: int, ids: list[int], channels: list[str]) -> tuple[dict, dict[int, dict[str, str]]]:
    """Profile rows and their consent states; one joined query when a single channel is asked."""
    columns = (
        Profile.id,
        Profile.erased_at,
        Profile.globally_unsubscribed,
        Profile.timezone,
        Profile.country,
        Profile.province,
    )
    stmt = sa.select(*columns).where(Profile.shop_id == shop_id, id_in(Profile.id, ids))
    if len(channels) == 1:
        joined = sa.and_(ConsentState.profile_id == Profile.id, ConsentState.channel == channels[0])
        rows = db.session.execute(stmt.add_columns(ConsentState.status).outerjoin(ConsentState, joined)).all()
        consents = {r.id: {channels[0]: r.status} for r in rows if r.status}
        return {r.id: r for r in rows}, consents
    profiles = {r.id: r for r in db.session.execute(stmt)}
    consents: dict[int, dict[str, str]] = {}
    states = sa.select(ConsentState.profile_id, ConsentState.channel, ConsentState.status).where(
        ConsentState.shop_id == shop_id,
        id_in(ConsentState.profile_id, ids),
        ConsentState.channel.in_(channels),
    )
    for pid, channel, status in db.session.execute(states):
        consents.setdefault(pid, {})[channel] = status
    return profiles, consents


def _phones(shop_id: int, ids: list[int]) -> dict[int, list[str]]:
    phones: dict[int, list[str]] = {}
    if not ids:
        return phones
    stmt = (
        sa.select(Identifier.profile_id, Identifier.value)
        .where(Identifier.shop_id == shop_id, Identifier.kind == "phone", id_in(Identifier.profile_id, ids))
        .order_by(Identifier.profile_id, Identifier.first_seen_at)
    )
    for pid, value in db.session.execute(stmt):
        phones.setdefault(pid, []).append(value)
    return phones


def _sent(shop_id: int, ids: list[int], now: dt.datetime) -> dict[int, list[tuple[dt.datetime, str]]]:
    sent: dict[int, list[tuple[dt.datetime, str]]] = {}
    stmt = sa.select(Message.profile_id, Message.channel, Message.created_at).where(
        Message.shop_id == shop_id,
        id_in(Message.profile_id, ids),
        Message.status == "sent",
        Message.created_at > now - FACTS_LOOKBACK,
    )
    for pid, channel, at in db.session.execute(stmt):
        sent.setdefault(pid, []).append((at, channel))
    return sent


def load_facts(
    shop: Shop,
    profile_ids: Iterable[int],
    now: dt.datetime,
    channels: Iterable[str] = CHANNELS,
    policy: GatePolicy | None = None,
) -> dict[int, ProfileFacts]:
    """Read the gate's facts for many profiles of one shop.

    Profiles of another shop (or unknown ids) are simply absent from the result.
    """
    channels = list(channels)
    shop_tz = (policy or load_policy(shop)).shop_timezone or shop.timezone
    facts: dict[int, ProfileFacts] = {}
    for chunk in _chunks(sorted(set(profile_ids))):
        profiles, consents = _profiles(shop.id, chunk, channels)
        found = sorted(profiles)
        if not found:
            continue
        # Phones matter only where neither the profile nor the address names a zone.
        phones = _phones(shop.id, [p.id for p in profiles.values() if not p.timezone and not p.country])
        sent = _sent(shop.id, found, now)
        for pid, p in profiles.items():
            zone = resolve_zone(
                profile_timezone=p.timezone,
                country=p.country,
                province=p.province,
                phones=phones.get(pid, ()),
                shop_timezone=shop_tz,
                shop_country=shop.country,
            )
            facts[pid] = ProfileFacts(
                zone=zone,
                consents=consents.get(pid, {}),
                globally_unsubscribed=bool(p.globally_unsubscribed),
                erased=p.erased_at is not None,
                sent=tuple(sent.get(pid, ())),
            )
    return facts
