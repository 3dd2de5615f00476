"""Reading the gate's arguments from the database: the shop's policy, each profile's facts.

Bulk by design: an audience of any size costs one query per chunk
(profiles with their consent for the channel and their recent sends
aggregated as JSON, each a correlated index lookup), plus phones only
where nothing else names a time zone. One profile costs one round trip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentState, Identifier, Message, Profile, Shop
from app.services.bulk_sql import id_array, id_in
from app.services.gate import CHANNELS, FACTS_LOOKBACK, GatePolicy, ProfileFacts
from app.services.shop_settings import effective_settings
from app.services.timezones import CustomerZone, address_zones, is_valid_zone, resolve_zone

CHUNK = 5000


def load_policy(shop: Shop) -> GatePolicy:
    """The shop's gate policy from its effective settings, and whether the app is still installed."""
    policy = GatePolicy.from_settings(effective_settings(shop))
    return dataclasses.replace(policy, uninstalled=True) if shop.uninstalled_at is not None else policy


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


@functools.lru_cache(maxsize=32)
def _facts_stmt(dialect: str, channel: str | None, single: bool) -> sa.Select:
    """The facts query, built once per shape: Core columns and bind parameters, so a check pays no compile.

    Parameters: ``shop_id``, ``since``, then ``pid`` (single) or ``ids``, and ``channel`` when joined.
    """
    pg = dialect == "postgresql"
    p, m, c = Profile.__table__, Message.__table__, ConsentState.__table__
    pair = (
        sa.func.json_build_array(m.c.channel, m.c.created_at)
        if pg
        else sa.func.json_array(m.c.channel, m.c.created_at)
    )
    agg = sa.func.json_agg(pair) if pg else sa.func.json_group_array(pair)
    sent = (
        sa.select(agg)
        .where(
            m.c.shop_id == sa.bindparam("shop_id"),
            m.c.profile_id == p.c.id,
            m.c.status == "sent",
            m.c.created_at > sa.bindparam("since"),
        )
        .correlate(p)
        .scalar_subquery()
        .label("sent")
    )
    if single:
        which = p.c.id == sa.bindparam("pid")
    elif pg:
        which = p.c.id == sa.any_(id_array("ids"))
    else:
        which = p.c.id.in_(sa.bindparam("ids", expanding=True))
    columns = [
        p.c.id,
        p.c.erased_at.is_not(None).label("erased"),
        p.c.globally_unsubscribed,
        p.c.timezone,
        p.c.country,
        p.c.province,
        sent,
    ]
    if channel is None:
        return sa.select(*columns).where(p.c.shop_id == sa.bindparam("shop_id"), which)
    # A correlated lookup (one unique-index probe per profile): as a join, PostgreSQL would hash
    # the whole consent table for every chunk of a large audience.
    status = (
        sa.select(c.c.status)
        .where(c.c.profile_id == p.c.id, c.c.channel == sa.bindparam("channel"))
        .correlate(p)
        .scalar_subquery()
        .label("status")
    )
    return sa.select(*columns, status).where(p.c.shop_id == sa.bindparam("shop_id"), which)


def _parse_sent(raw, until: dt.datetime | None) -> tuple[tuple[dt.datetime, str], ...]:
    """The sends as ``(when, channel)``, leaving out those made after ``until`` when given."""
    if raw is None:
        return ()
    pairs = json.loads(raw) if isinstance(raw, str) else raw
    out = []
    for channel, at in pairs:
        moment = dt.datetime.fromisoformat(at)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        if until is None or moment <= until:
            out.append((moment, channel))
    return tuple(out)


def _profiles(shop_id: int, ids: list[int], channels: list[str], now: dt.datetime) -> tuple[list, dict]:
    """Profile rows (plain tuples, in ``_facts_stmt`` column order) and consent states by profile."""
    single, channel = len(ids) == 1, channels[0] if len(channels) == 1 else None
    stmt = _facts_stmt(db.session.get_bind().dialect.name, channel, single)
    params = {"shop_id": shop_id, "since": now - FACTS_LOOKBACK, "channel": channel}
    params.update({"pid": ids[0]} if single else {"ids": list(ids)})
    rows = db.session.execute(stmt, params).all()
    if channel is not None:
        return rows, {r[0]: {channel: r[7]} for r in rows if r[7]}
    consents: dict[int, dict[str, str]] = {}
    states = sa.select(ConsentState.profile_id, ConsentState.channel, ConsentState.status).where(
        ConsentState.shop_id == shop_id,
        id_in(ConsentState.profile_id, ids),
        ConsentState.channel.in_(channels),
    )
    for pid, state_channel, status in db.session.execute(states):
        consents.setdefault(pid, {})[state_channel] = status
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
    until: dt.datetime | None = None,
) -> dict[int, ProfileFacts]:
    """Read the gate's facts for many profiles of one shop.

    Profiles of another shop (or unknown ids) are simply absent from the result.

    Args:
        until: leave out sends made after it: a read-only check of another moment sees the
            sends made by then. A send leaves it out, so that it counts every send of the
            window, even one stamped a moment after its own ``now`` by a request that read
            the clock later but took the profile's lock first.
    """
    channels = list(channels)
    shop_tz = (policy or load_policy(shop)).shop_timezone or shop.timezone
    facts: dict[int, ProfileFacts] = {}
    shop_id, shop_country = shop.id, shop.country
    # Without phones the zone depends on (timezone, country, province) alone: an audience has few.
    zones: dict[tuple, CustomerZone] = {}
    for chunk in _chunks(sorted(set(profile_ids))):
        rows, consents = _profiles(shop_id, chunk, channels, now)
        # Phones matter only where neither the profile nor the address names a zone (an address
        # may name a country of no known zone: the phone's country is the next best).
        phones = _phones(
            shop_id, [r[0] for r in rows if not is_valid_zone(r[3]) and not address_zones(r[4], r[5])]
        )
        for pid, erased, unsubscribed, timezone, country, province, sent, *_ in rows:
            key = (timezone, country, province)
            zone = None if pid in phones else zones.get(key)
            if zone is None:
                zone = resolve_zone(
                    profile_timezone=timezone,
                    country=country,
                    province=province,
                    phones=phones.get(pid, ()),
                    shop_timezone=shop_tz,
                    shop_country=shop_country,
                )
                if pid not in phones:
                    zones[key] = zone
            facts[pid] = ProfileFacts(
                zone=zone,
                consents=consents.get(pid, {}),
                globally_unsubscribed=bool(unsubscribed),
                erased=bool(erased),
                sent=_parse_sent(sent, until),
            )
    return facts
