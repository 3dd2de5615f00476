"""An ingest batch's consent records, written together: one lock, one insert, one state rebuild.

``record_consent`` costs a lock, a replay check, a flush and a state rebuild per
record: for a batch of Shopify consent topics that was the largest share of the
work after resolution. A batch collects its records here in delivery order and
``finish`` leaves what ``record_consent`` on each in turn would have left: a
record whose ``external_ref`` is already stored for that profile and channel
(or appears earlier in the batch) is not added again, and every touched
profile's state is rebuilt from its whole history. The profiles are locked
first, in id order, as a single record locks its profile, so a send in flight
finishes before the new state is written and every later send sees it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentRecord, Profile
from app.services.bulk_sql import id_in
from app.services.consent import check_record, refresh_states_many
from app.services.profile_lock import lock_profiles


@dataclass
class _Pending:
    profile: Profile
    values: dict


@dataclass
class ConsentBatch:
    """Consent records waiting for the end of their batch."""

    shop_id: int
    pending: list[_Pending] = field(default_factory=list)

    def add(
        self,
        profile: Profile,
        channel: str,
        status: str,
        *,
        source: str,
        captured_at: dt.datetime,
        explicit: bool = True,
        identifier: str | None = None,
        external_ref: str | None = None,
    ) -> None:
        """Queue one record, as ``record_consent`` takes it (checked now, written by ``finish``).

        Raises:
            ValidationFailed: an unknown channel or status, or a naive ``captured_at``.
        """
        check_record(channel, status, captured_at)
        values = {
            "channel": channel,
            "status": status,
            "explicit": explicit,
            "source": source,
            "identifier": identifier,
            "captured_at": captured_at,
            "external_ref": external_ref,
        }
        self.pending.append(_Pending(profile, values))

    def finish(self) -> None:
        """Lock the profiles, append the new records, and rebuild the touched profiles' states."""
        if not self.pending:
            return
        profiles = {p.profile.id: p.profile for p in self.pending}
        ids = sorted(profiles)
        lock_profiles(self.shop_id, ids)
        seen = self._stored_refs(ids)
        records = []
        for item in self.pending:
            ref = item.values["external_ref"]
            key = (item.profile.id, item.values["channel"], ref)
            if ref is not None and key in seen:
                continue
            seen.add(key)
            records.append(ConsentRecord(shop_id=self.shop_id, profile_id=item.profile.id, **item.values))
        self.pending.clear()
        db.session.add_all(records)
        db.session.flush()
        refresh_states_many(self.shop_id, profiles)
        from app.services.opt_out_holders import share_with_holders

        holders = sorted(share_with_holders(self.shop_id, records))
        if holders:
            lock_profiles(self.shop_id, holders)
            refresh_states_many(self.shop_id, {pid: db.session.get(Profile, pid) for pid in holders})

    def _stored_refs(self, ids: list[int]) -> set[tuple[int, str, str]]:
        refs = sorted({p.values["external_ref"] for p in self.pending if p.values["external_ref"]})
        if not refs:
            return set()
        rows = db.session.execute(
            sa.select(ConsentRecord.profile_id, ConsentRecord.channel, ConsentRecord.external_ref).where(
                ConsentRecord.shop_id == self.shop_id,
                id_in(ConsentRecord.profile_id, ids),
                ConsentRecord.external_ref.in_(refs),
            )
        )
        return {tuple(r) for r in rows}
