"""Apply a claimed batch of one shop's deliveries in one go (the caller owns the transaction).

Every row is parsed first (``plan_*``, no database), the signals of the batch are
resolved in one ``resolve_many`` call, rows with work of their own (orders, consent
topics) do it in delivery order on their resolved profile, and then the events,
engagement counters, search texts and lifecycle stages are written in bulk: a small,
constant number of statements for a batch of page views and email events.

Rows no plan covers (Twilio, WhatsApp, API events, customer records, refunds, SendGrid
opt-outs) are applied on their own, in their place: the batch is cut into runs around
them, so every row still sees the rows before it applied.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.models import Profile, Shop, WebhookDelivery
from app.models.base import utcnow
from app.services.bulk_sql import update_rows
from app.services.consent_batch import ConsentBatch
from app.services.deferred_stamps import stamped_profiles, stamped_unnamed
from app.services.identifiers import live_profile
from app.services.ingest.common import Planned, message_profiles, record_events, refresh_search_texts

CONSENT_TOPICS = {
    "customers/email_marketing_consent_update": "email",
    "customers/marketing_consent_update": "sms",
}


def plan_row(shop: Shop, row: WebhookDelivery) -> Planned | None:
    """The row's plan, or None when it is applied on its own."""
    from app.services.ingest import _json, customers, orders, pixel, sendgrid
    from app.services.ingest.shopify import ORDER_TOPICS

    if row.provider == "pixel":
        return pixel.plan_pixel_event(shop, _json(row), row)
    if row.provider == "sendgrid":
        event = _json(row)
        return None if sendgrid.is_opt_out(event) else sendgrid.plan_sendgrid_event(shop, event, row)
    if row.provider == "shopify" and row.topic in ORDER_TOPICS:
        return orders.plan_order(shop, _json(row), row)
    if row.provider == "shopify" and row.topic in CONSENT_TOPICS:
        return customers.plan_consent_topic(shop, _json(row), row, CONSENT_TOPICS[row.topic])
    return None


def process_batch(shop: Shop, rows: list[WebhookDelivery]) -> None:
    """Apply ``rows`` (one shop's, in id order) with the same outcome as one after the other.

    Raises:
        Exception: anything; the caller rolls the batch back and redoes it row by row.
    """
    from app.services.ingest import process_delivery_row

    run: list[Planned] = []
    for row in rows:
        planned = plan_row(shop, row)
        if planned is not None:
            run.append(planned)
            continue
        apply_run(shop, run)
        run = []
        process_delivery_row(shop, row)
    apply_run(shop, run)


def _resolve(shop: Shop, run: list[Planned]) -> None:
    """Set each plan's profile: the recipient of our message, else its signal resolved (one call)."""
    from app.services.resolution import resolve_many

    with_refs = [p for p in run if p.message_refs]
    for planned, profile in zip(
        with_refs, message_profiles(shop, [p.message_refs for p in with_refs]), strict=True
    ):
        planned.profile = profile
    todo = [p for p in run if p.profile is None and p.signal is not None]
    if todo:
        for planned, profile in zip(todo, resolve_many(shop, [p.signal for p in todo]), strict=True):
            planned.profile = profile
    _reload_expired(run)
    # A later signal of the batch may have merged an earlier one's profile away: its events
    # belong to the survivor, where they would have moved had they been stored first.
    for planned in run:
        planned.profile = live_profile(planned.profile)


def _reload_expired(run: list[Planned]) -> None:
    """Reload in one read each what a merge expired: the run's profiles and their survivors, the rows.

    (A merge expires the rows it moved or set aside; lazy reloads would cost a query per object.)
    """
    profiles = [p.profile for p in run if p.profile is not None]
    for _ in range(10):  # merge chains are short
        expired = {sa.inspect(p).identity[0] for p in profiles if sa.inspect(p).expired_attributes}
        if expired:
            db.session.scalars(sa.select(Profile).where(Profile.id.in_(expired))).all()
        survivors = {p.merged_into_id for p in profiles if p.merged_into_id is not None}
        held = {pid: _held(Profile, pid) for pid in survivors}
        profiles = [p for p in held.values() if p is not None]
        missing = [pid for pid, p in held.items() if p is None]
        if missing:
            profiles += db.session.scalars(sa.select(Profile).where(Profile.id.in_(missing))).all()
        if not profiles:
            break
    rows = [
        state.identity[0]
        for state in (sa.inspect(obj) for obj in db.session.identity_map.values())
        if state.mapper.class_ is WebhookDelivery and state.expired_attributes
    ]
    if rows:
        db.session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.id.in_(rows))).all()


def _held(model, pk: int):
    """The session's object for ``pk`` without loading it (None when the session has none)."""
    return db.session.identity_map.get(sa.inspect(model).identity_key_from_primary_key((pk,)))


def apply_run(shop: Shop, run: list[Planned], *, announce: bool = True) -> None:
    """Resolve, apply and store a run of plans in bulk.

    Args:
        announce: record each profile's change of stage as a ``lifecycle.changed`` event
            (journeys start on it). An import of history stages its profiles quietly: a
            year-old order moving a customer to "churned" today is no news to act on.
    """
    if not run:
        return
    from app.services.ingest.orders import OrderRun

    _resolve(shop, run)
    refs = [p.order_ref for p in run if p.order_ref is not None]
    orders = OrderRun.load(shop, refs) if refs else None
    consents = ConsentBatch(shop.id)
    with ChangedProfiles(shop) as touched:
        _apply_plans(run, orders, consents)
        _store(shop, run, orders, touched, announce)


def _apply_plans(run: list[Planned], orders, consents: ConsentBatch) -> None:
    """Each plan's own work (orders, consent topics) in delivery order, then their grouped writes."""
    for planned in run:
        if planned.after is not None:
            planned.after(planned.profile, orders, consents)
    if orders is not None:
        orders.finish()
    consents.finish()


def _store(shop: Shop, run: list[Planned], orders, touched: ChangedProfiles, announce: bool) -> None:
    """Write the run's events, engagement counters, search texts and lifecycle stages in bulk."""
    from app.services.engagement import apply_engagements
    from app.services.lifecycle import record_changes, refresh_lifecycles
    from app.services.live_scores import refresh_all

    # As row by row, a profile's stage is refreshed when the signal changed it after resolving.
    # No autoflush from here on: the profile changes go out together at the end (executemany).
    with db.session.no_autoflush:
        refresh_search_texts(shop, {p.profile for p in run if p.contact and p.profile is not None})
        stored = [p for p in run if p.event is not None]
        deferred = orders.events if orders is not None else []
        new = record_events(shop, [(p.profile, p.event) for p in stored] + deferred)[: len(stored)]
        apply_engagements(
            shop.id,
            [
                (p.profile, *p.metric, p.event["occurred_at"])
                for p, is_new in zip(stored, new, strict=True)
                if is_new and p.metric is not None and p.profile is not None
            ],
        )
        if stamped_unnamed(db.session):
            # SQLite names a new profile only by inserting it: a profile the run made must have
            # its id to have its stage follow the batch (two visits on two days: engaged).
            db.session.flush()
        changed = touched.collect()
        for profile in stamped_profiles(db.session).values():  # seen again: moved no ORM state
            if profile.shop_id == shop.id:
                changed.setdefault(profile.id, profile)
        live = [p for p in changed.values() if p.merged_into_id is None and p.erased_at is None]
        now = utcnow()
        live.sort(key=lambda p: p.id)
        changes = refresh_lifecycles(shop, live, now)
        _write_columns([changed[c["profile_id"]] for c in changes], STAGE_COLUMNS)
        _write_columns(refresh_all(shop, live, now), SCORE_COLUMNS)
        _write_profiles(changed.values())
    db.session.flush()
    if announce:
        record_changes(changes)


STAGE_COLUMNS = ("lifecycle_stage", "lifecycle_changed_at")
SCORE_COLUMNS = ("rfm_r", "rfm_f", "rfm_m", "churn_risk")


def _write_columns(profiles: list[Profile], names: tuple[str, ...]) -> None:
    """Write these columns of the batch's profiles as one statement, whatever else each changed.

    Left to ``_write_profiles`` a stage (or score) change joins each profile's other changed
    columns, and a batch of page views, email events and returns makes a statement per combination.
    """
    rows, now = [], utcnow()
    for profile in profiles:
        values = {**{name: getattr(profile, name) for name in names}, "updated_at": now}
        for name, value in values.items():
            set_committed_value(profile, name, value)
        rows.append({"id": profile.id, **values})
    update_rows(Profile.__table__, rows)


def _write_profiles(profiles) -> None:
    """Write changed profiles with one executemany UPDATE per set of changed columns.

    The ORM's flush would split them into one statement per run of equal column sets
    in id order, i.e. nearly one per profile once a batch mixes kinds of change.
    """
    mapper = sa.inspect(Profile)
    table = Profile.__table__
    groups: dict[tuple[str, ...], list[Profile]] = {}
    for profile in profiles:
        state = sa.inspect(profile)
        keys = tuple(sorted(state.committed_state))
        if keys and state.persistent and all(k in mapper.column_attrs for k in keys):
            groups.setdefault(keys, []).append(profile)
    now = utcnow()
    for keys, members in groups.items():
        columns = {mapper.column_attrs[k].columns[0].name: sa.bindparam(f"v_{k}") for k in keys}
        columns["updated_at"] = sa.bindparam("v_updated_at_")
        stmt = sa.update(table).where(table.c.id == sa.bindparam("pk_")).values(columns)
        rows = [
            {"pk_": p.id, "v_updated_at_": now, **{f"v_{k}": getattr(p, k) for k in keys}} for p in members
        ]
        db.session.execute(stmt, rows)
        for profile in members:
            for key in keys:
                set_committed_value(profile, key, getattr(profile, key))
            set_committed_value(profile, "updated_at", now)


class ChangedProfiles:
    """The shop's profiles a run changed: those changed now, and those a flush wrote since it began.

    A flush leaves a written profile clean, so the run would lose sight of it; the
    session's ``before_flush`` catches those. Looking at the session after every row
    instead scans all its pending rows once per row, which grows with the batch
    (hundreds of orders, each with its lines, before the first flush).

    At each flush it also writes the profiles' changes itself, grouped (``_write_profiles``):
    any query of the run (a consent's row lock, an order lookup) autoflushes, and the ORM
    would write the batch's changed profiles one statement per run of equal column sets
    in id order, nearly one per profile.
    """

    def __init__(self, shop: Shop, *, write: bool = True):
        self.shop_id, self.write = shop.id, write
        self.seen: dict[int, Profile] = {}
        self.session = db.session()

    def __enter__(self) -> ChangedProfiles:
        sa.event.listen(self.session, "before_flush", self._flushed)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self.session, "before_flush", self._flushed)

    def _flushed(self, session, _context, _instances) -> None:
        self._note(session)
        if self.write:
            _write_profiles(o for o in session.dirty if isinstance(o, Profile) and o.shop_id == self.shop_id)

    def collect(self) -> dict[int, Profile]:
        """Every profile changed so far, by id (a profile not yet given an id is not one the run changed)."""
        self._note(self.session)
        return self.seen

    def _note(self, session) -> None:
        for obj in (*session.new, *session.dirty):
            if isinstance(obj, Profile) and obj.shop_id == self.shop_id and obj.id is not None:
                self.seen[obj.id] = obj
