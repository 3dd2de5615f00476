"""Consent: append-only history per channel, and the state derived from it.

Rules (the README repeats them):

* Each record keeps the exact consent text (stored once per distinct text,
  with a SHA-256 and a version), the source, the time, and IP/user agent
  where known. Records are only appended; GDPR erasure alone removes them.
* A channel's state is its latest record by ``captured_at`` — except that
  an opt-in that is not ``explicit`` (a bulk import, a sync from another
  tool) never lifts an earlier opt-out: only the customer's own newer
  opt-in does.
* A global unsubscribe (channel ``all``) turns every channel off at once.
  A channel comes back only with an explicit opt-in for that channel
  captured after the global unsubscribe.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from app.errors import ValidationFailed
from app.extensions import db
from app.models import ConsentRecord, ConsentState, ConsentText, Profile, Shop
from app.models.base import utcnow
from app.models.profile import CHANNELS
from app.services.bulk_sql import id_in
from app.services.profile_lock import lock_live
from app.tenancy import scoped

ALL = "all"
OPTED_IN = "opted_in"
OPTED_OUT = "opted_out"
# The identifier kind each channel's address is: an opt-out naming one is that address's.
ADDRESS_KIND = {"email": "email", "sms": "phone", "whatsapp": "phone"}


def consent_text(shop_id: int, body: str | None) -> ConsentText | None:
    """The stored row for this exact wording, created (with the next version) once."""
    if not body:
        return None
    digest = hashlib.sha256(body.encode()).hexdigest()
    row = db.session.scalar(scoped(ConsentText, shop_id).where(ConsentText.sha256 == digest))
    if row is None:
        version = (db.session.scalar(scoped(ConsentText, shop_id, sa.func.max(ConsentText.version))) or 0) + 1
        try:
            with db.session.begin_nested():  # two captures of a new wording at once: one row wins
                row = ConsentText(shop_id=shop_id, sha256=digest, version=version, body=body)
                db.session.add(row)
        except sa.exc.IntegrityError:
            row = db.session.scalar(scoped(ConsentText, shop_id).where(ConsentText.sha256 == digest))
    return row


def derive_state(records: Iterable[ConsentRecord], channel: str) -> ConsentRecord | None:
    """The record that decides ``channel`` now, following the module's rules.

    Args:
        records: the profile's records for ``channel`` and ``all``, any order.

    Returns:
        The deciding record (its ``status`` is the state), or None when the
        customer never said anything for this channel.
    """
    ordered = sorted(records, key=lambda r: (r.captured_at, r.id or 0))
    current: ConsentRecord | None = None
    for record in ordered:
        if record.channel == ALL:
            if record.status == OPTED_OUT:
                current = record
            continue
        if record.channel != channel:
            continue
        lifts_opt_out = record.status == OPTED_IN and current is not None and current.status == OPTED_OUT
        if lifts_opt_out and not record.explicit:
            continue
        current = record
    return current


def refresh_states(profile: Profile) -> dict[str, str | None]:
    """Rebuild the profile's ``consent_states`` rows from its history."""
    return refresh_states_many(profile.shop_id, {profile.id: profile})[profile.id]


def refresh_states_many(shop_id: int, profiles: dict[int, Profile]) -> dict[int, dict[str, str | None]]:
    """``refresh_states`` for several profiles of one shop (by id), with two reads in all."""
    ids = sorted(profiles)
    history: dict[int, list[ConsentRecord]] = {pid: [] for pid in ids}
    for record in db.session.scalars(
        scoped(ConsentRecord, shop_id).where(id_in(ConsentRecord.profile_id, ids))
    ):
        history[record.profile_id].append(record)
    existing: dict[int, dict[str, ConsentState]] = {pid: {} for pid in ids}
    for state in db.session.scalars(scoped(ConsentState, shop_id).where(id_in(ConsentState.profile_id, ids))):
        existing[state.profile_id][state.channel] = state
    return {pid: apply_states(profiles[pid], history[pid], existing[pid]) for pid in ids}


def rebuild_states(profile: Profile) -> dict[str, str | None]:
    """``refresh_states`` for a profile with no state rows: a merge has just taken them aside for undo."""
    return apply_states(profile, _records_of(profile), {})


def _records_of(profile: Profile) -> list[ConsentRecord]:
    return list(
        db.session.scalars(
            scoped(ConsentRecord, profile.shop_id).where(ConsentRecord.profile_id == profile.id)
        )
    )


def apply_states(
    profile: Profile, records: list[ConsentRecord], existing: dict[str, ConsentState]
) -> dict[str, str | None]:
    """Set the profile's state rows (``existing``, by channel) and flags from its whole ``records``."""
    states: dict[str, str | None] = {}
    for channel in CHANNELS:
        deciding = derive_state(records, channel)
        states[channel] = deciding.status if deciding else None
        row = existing.get(channel)
        if deciding is None:
            if row is not None:
                db.session.delete(row)
            continue
        if row is None:
            row = ConsentState(shop_id=profile.shop_id, profile_id=profile.id, channel=channel)
            db.session.add(row)
        if (row.status, row.record_id) != (deciding.status, deciding.id):
            row.status, row.record_id, row.updated_at = deciding.status, deciding.id, utcnow()
    global_outs = [r for r in records if r.channel == ALL and r.status == OPTED_OUT]
    latest_global = max(global_outs, key=lambda r: r.captured_at, default=None)
    profile.globally_unsubscribed = latest_global is not None and all(s != OPTED_IN for s in states.values())
    profile.globally_unsubscribed_at = latest_global.captured_at if latest_global else None
    return states


def check_record(channel: str, status: str, captured_at: dt.datetime) -> None:
    """Raise ``ValidationFailed`` for an unknown channel or status, or a naive ``captured_at``."""
    if channel not in (*CHANNELS, ALL):
        raise ValidationFailed(f"channel must be one of {', '.join(CHANNELS)}", field="channel")
    if status not in (OPTED_IN, OPTED_OUT):
        raise ValidationFailed("status must be opted_in or opted_out", field="status")
    if not isinstance(captured_at, dt.datetime) or captured_at.tzinfo is None:
        raise ValidationFailed("captured_at must be a timestamp with a time zone", field="captured_at")


def record_consent(
    profile: Profile,
    channel: str,
    status: str,
    *,
    source: str,
    captured_at: dt.datetime,
    text: str | None = None,
    explicit: bool = True,
    identifier: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    external_ref: str | None = None,
) -> ConsentRecord:
    """Append a consent record for ``channel`` (or ``all``) and refresh the state.

    Args:
        explicit: False for imports and syncs, which never lift an opt-out.
        external_ref: a source id (webhook id, message sid) so a replay adds nothing.

    Raises:
        ValidationFailed: an unknown channel or status, or a naive ``captured_at``.
    """
    check_record(channel, status, captured_at)
    # Nothing is consented to in the future: a record dated ahead of our clock (a sender's clock
    # running fast, a typo'd year) would outrank every later opt-out, for good. It counts from now.
    captured_at = min(captured_at, utcnow())
    # Serialise with the gate's reservation: a send in flight finishes first, every later one sees this.
    # A merge that committed while we waited moved the profile's consent: the record follows it.
    profile = lock_live(profile.shop_id, profile.id) or profile
    if external_ref:
        existing = db.session.scalar(
            scoped(ConsentRecord, profile.shop_id).where(
                ConsentRecord.profile_id == profile.id,
                ConsentRecord.channel == channel,
                ConsentRecord.external_ref == external_ref,
            )
        )
        if existing is not None:
            return existing
    text_row = consent_text(profile.shop_id, text)
    record = ConsentRecord(
        shop_id=profile.shop_id,
        profile_id=profile.id,
        channel=channel,
        status=status,
        explicit=explicit,
        consent_text_id=text_row.id if text_row else None,
        source=source,
        identifier=identifier,
        ip=ip,
        user_agent=user_agent,
        captured_at=captured_at,
        external_ref=external_ref,
    )
    db.session.add(record)
    db.session.flush()
    refresh_states(profile)
    from app.services.opt_out_holders import share_with_holders

    for holder_id in share_with_holders(profile.shop_id, [record]):
        holder = lock_live(profile.shop_id, holder_id)
        if holder is not None:
            refresh_states(holder)
    return record


def unsubscribe_all(
    profile: Profile,
    *,
    source: str,
    captured_at: dt.datetime,
    external_ref: str | None = None,
    identifier: str | None = None,
) -> ConsentRecord:
    """Global unsubscribe: every channel off at once, from any path.

    ``identifier``: the one it was asked for, where known, so an undo of a merge made in
    between gives it to the side that holds it (``arrivals``).
    """
    return record_consent(
        profile,
        ALL,
        OPTED_OUT,
        source=source,
        captured_at=captured_at,
        external_ref=external_ref,
        identifier=identifier,
    )


def channel_states(profile: Profile) -> dict[str, str | None]:
    """``{channel: opted_in|opted_out|None}`` read from the derived state rows."""
    rows = db.session.execute(
        scoped(ConsentState, profile.shop_id, ConsentState.channel, ConsentState.status).where(
            ConsentState.profile_id == profile.id
        )
    )
    states = dict.fromkeys(CHANNELS)
    states.update(dict(rows.all()))
    return states


def consents_section(shop: Shop, profile: Profile) -> dict:
    """The profile document's ``consents`` and ``globally_unsubscribed`` keys."""
    rows = db.session.execute(
        scoped(ConsentState, shop.id, ConsentState.channel, ConsentRecord, ConsentText.body)
        .join(ConsentRecord, ConsentRecord.id == ConsentState.record_id)
        .outerjoin(ConsentText, ConsentText.id == ConsentRecord.consent_text_id)
        .where(ConsentState.profile_id == profile.id)
    )
    consents: dict[str, dict | None] = dict.fromkeys(CHANNELS)
    for channel, record, body in rows:
        consents[channel] = {
            "status": record.status,
            "consent_text": body,
            "captured_at": record.captured_at.isoformat(),
            "source": record.source,
            "explicit": record.explicit,
            "global_unsubscribe": record.channel == ALL,
        }
    for channel in CHANNELS:
        if consents[channel] is None:
            consents[channel] = {"status": None, "consent_text": None, "captured_at": None, "source": None}
    return {"consents": consents, "globally_unsubscribed": profile.globally_unsubscribed}
