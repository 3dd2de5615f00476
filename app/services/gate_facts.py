"""Reading the gate's arguments from the database: the shop's policy, each profile's facts.

Bulk by design: an audience of any size costs one query per chunk
(profiles joined to their consent for the channel, with their recent
sends aggregated as JSON), plus phones only where nothing else names a
time zone. One profile costs one round trip.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentState, Identifier, Message, Profile, Shop
from app.services.bulk_sql import id_in, is_postgresql
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


def _sent_column(shop_id: int, now: dt.datetime):
    """A correlated subquery: the profile's recent sends as a JSON array of [channel, sent_at]."""
    pair = (
        sa.func.json_build_array(Message.channel, Message.created_at)
        if is_postgresql()
        else sa.func.json_array(Message.channel, Message.created_at)
    )
    agg = sa.func.json_agg(pair) if is_postgresql() else sa.func.json_group_array(pair)
    return (
        sa.select(agg)
        .where(
            Message.shop_id == shop_id,
            Message.profile_id == Profile.id,
            Message.status == "sent",
            Message.created_at > now - FACTS_LOOKBACK,
        )
        .correlate(Profile)
        .scalar_subquery()
        .label("sent")
    )


def _parse_sent(raw) -> tuple[tuple[dt.datetime, str], ...]:
    if raw is None:
        return ()
    pairs = json.loads(raw) if isinstance(raw, str) else raw
    out = []
    for channel, at in pairs:
        moment = dt.datetime.fromisoformat(at)
        out.append((moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC), channel))
    return tuple(out)


def _profiles(shop_id: int, ids: list[int], channels: list[str], now: dt.datetime) -> tuple[list, dict]:
    """Profile rows with their recent sends, and their consent states, in one query for one channel."""
    columns = (
        Profile.id,
        Profile.erased_at,
        Profile.globally_unsubscribed,
        Profile.timezone,
        Profile.country,
        Profile.province,
        _sent_column(shop_id, now),
    )
    stmt = sa.select(*columns).where(Profile.shop_id == shop_id, id_in(Profile.id, ids))
    if len(channels) == 1:
        joined = sa.and_(ConsentState.profile_id == Profile.id, ConsentState.channel == channels[0])
        rows = db.session.execute(stmt.add_columns(ConsentState.status).outerjoin(ConsentState, joined)).all()
        return rows, {r.id: {channels[0]: r.status} for r in rows if r.status}
    rows = db.session.execute(stmt).all()
    consents: dict[int, dict[str, str]] = {}
    states = sa.select(ConsentState.profile_id, ConsentState.channel, ConsentState.status).where(
        ConsentState.shop_id == shop_id,
        id_in(ConsentState.profile_id, ids),
        ConsentState.channel.in_(channels),
    )
    for pid, channel, status in db.session.execute(states):
        consents.setdefault(pid, {})[channel] = status
    return rows, consents


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
        rows, consents = _profiles(shop.id, chunk, channels, now)
        # Phones matter only where neither the profile nor the address names a zone.
        phones = _phones(shop.id, [p.id for p in rows if not p.timezone and not p.country])
        for p in rows:
            pid = p.id
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
                sent=_parse_sent(p.sent),
            )
    return facts
