"""Lifecycle stages: the rules in one place, for ingest (one profile) and enrichment (a whole shop).

Every profile is in exactly one stage. The stage depends on three facts
and the shop's two windows (``effective_settings(shop)["lifecycle"]``:
``at_risk_days`` A < ``churned_days`` C, defaults 30 and 90):

* ``orders`` — live (not cancelled) orders so far;
* ``quiet`` — whole days of silence. For a buyer it is counted from the
  last order (a buyer who only browses is still drifting away as a
  customer); for someone who never bought, from their last activity of
  any kind (visit, open, click, reply). Someone never seen at all is 0;
* ``returning`` — a non-buyer who came back on another day or opened,
  clicked or replied at least once ("browsing or engaging repeatedly").

==========  ======================================================
stage       rule
==========  ======================================================
churned     quiet ≥ C
at_risk     A ≤ quiet < C
loyal       quiet < A and orders ≥ 2
converted   quiet < A and orders = 1
engaged     quiet < A and orders = 0 and returning
new         quiet < A and orders = 0 and not returning
==========  ======================================================

The predicates below are written so that they work on scalars and on
numpy arrays alike; the property test checks that exactly one holds for
any facts, and the enrichment job applies the very same table
vectorised. A change of stage is recorded as an ``Event`` of type
``lifecycle.changed`` (journeys trigger on it).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import ValidationFailed
from app.extensions import db
from app.models import Event, Profile, Shop
from app.models.profile import LIFECYCLE_STAGES
from app.services.shop_settings import effective_settings

EVENT_TYPE = "lifecycle.changed"
EVENT_SOURCE = "c360"
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Windows:
    """A shop's lifecycle windows in days (at-risk strictly shorter than churned)."""

    at_risk_days: int
    churned_days: int

    def __post_init__(self):
        if not 0 < self.at_risk_days < self.churned_days:
            raise ValidationFailed("lifecycle.at_risk_days must be shorter than lifecycle.churned_days")


@dataclass(frozen=True)
class Facts:
    """What a stage depends on; each field is a scalar or a numpy array of equal length."""

    orders: Any
    quiet: Any
    returning: Any


Rule = Callable[[Facts, Windows], Any]

STAGE_RULES: tuple[tuple[str, Rule], ...] = (
    ("churned", lambda f, w: f.quiet >= w.churned_days),
    ("at_risk", lambda f, w: np.logical_and(f.quiet >= w.at_risk_days, f.quiet < w.churned_days)),
    ("loyal", lambda f, w: np.logical_and(f.quiet < w.at_risk_days, f.orders >= 2)),
    ("converted", lambda f, w: np.logical_and(f.quiet < w.at_risk_days, f.orders == 1)),
    (
        "engaged",
        lambda f, w: np.logical_and.reduce([f.quiet < w.at_risk_days, f.orders == 0, f.returning]),
    ),
    (
        "new",
        lambda f, w: np.logical_and.reduce(
            [f.quiet < w.at_risk_days, f.orders == 0, np.logical_not(f.returning)]
        ),
    ),
)
assert tuple(name for name, _ in STAGE_RULES) == tuple(reversed(LIFECYCLE_STAGES))


def shop_windows(shop: Shop) -> Windows:
    """The windows this shop's plan and settings give it."""
    life = effective_settings(shop)["lifecycle"]
    return Windows(int(life["at_risk_days"]), int(life["churned_days"]))


def matching_stages(facts: Facts, windows: Windows) -> list[str]:
    """Every stage whose rule holds for scalar ``facts`` (exactly one, by construction)."""
    return [name for name, rule in STAGE_RULES if bool(rule(facts, windows))]


def stage_of(facts: Facts, windows: Windows) -> str:
    """The one stage of scalar ``facts``."""
    (stage,) = matching_stages(facts, windows)
    return stage


def stages_of(facts: Facts, windows: Windows) -> np.ndarray:
    """The stage of every row of array ``facts`` (the enrichment job's path)."""
    conditions = [np.asarray(rule(facts, windows), dtype=bool) for _, rule in STAGE_RULES]
    return np.select(conditions, [name for name, _ in STAGE_RULES], default="new")


def whole_days(now: dt.datetime, then: dt.datetime | None) -> int | None:
    """Completed days from ``then`` to ``now`` (never negative), or None."""
    if then is None:
        return None
    return max(0, math.floor((now - then) / DAY))


def quiet_days(profile: Profile, now: dt.datetime) -> int | None:
    """Whole days since the person's last activity of any kind (order, visit, open…), or None."""
    active = [t for t in (profile.last_order_at, profile.last_seen_at, profile.last_engaged_at) if t]
    return whole_days(now, max(active)) if active else None


def facts_of(profile: Profile, now: dt.datetime) -> Facts:
    """Read a profile's stage facts from its counters (the incremental path)."""
    orders = profile.order_count or 0
    if orders > 0 and profile.last_order_at is not None:
        quiet = whole_days(now, profile.last_order_at)
    else:
        quiet = quiet_days(profile, now) or 0
    first, last = profile.first_seen_at, profile.last_seen_at
    returning = profile.last_engaged_at is not None or bool(first and last and last - first >= DAY)
    return Facts(orders=orders, quiet=quiet, returning=returning)


def record_change(profile: Profile, old: str, new: str, at: dt.datetime) -> Event:
    """Add the ``lifecycle.changed`` event for one transition to the session."""
    event = Event(
        shop_id=profile.shop_id,
        profile_id=profile.id,
        type=EVENT_TYPE,
        source=EVENT_SOURCE,
        external_id=change_external_id(profile.id, new, at),
        identifiers={},
        properties={"from": old, "to": new, "at": at.isoformat()},
        occurred_at=at,
    )
    db.session.add(event)
    return event


def change_external_id(profile_id: int, new: str, at: dt.datetime) -> str:
    """A stable id per (profile, stage, instant), so a replayed change is stored once."""
    return f"lifecycle:{profile_id}:{new}:{at.isoformat()}"


def refresh_lifecycle(shop: Shop, profile: Profile, now: dt.datetime) -> str:
    """Bring one profile's stage up to date, recording a change; ingest calls this per signal.

    Args:
        shop: the profile's shop (its windows apply).
        profile: the profile, with counters already updated for the new signal.
        now: the moment of evaluation (aware).

    Returns:
        The profile's stage after the refresh.
    """
    return _refresh(shop, profile, now, shop_windows(shop))


def restage(shop: Shop, profile: Profile, now: dt.datetime) -> dict[str, str] | None:
    """Bring the stage up to date without a ``lifecycle.changed`` event: ``{"from", "to"}`` if it moved.

    For a merge, whose own ``profile.merged`` event carries the change (and goes with its undo).
    """
    new, old = stage_of(facts_of(profile, now), shop_windows(shop)), profile.lifecycle_stage
    if new == old:
        return None
    profile.lifecycle_stage, profile.lifecycle_changed_at = new, now
    return {"from": old, "to": new}


def refresh_lifecycles(shop: Shop, profiles: list[Profile], now: dt.datetime) -> list[dict]:
    """``refresh_lifecycle`` for every profile a batch touched, with the shop's windows read once.

    Returns:
        The ``lifecycle.changed`` events as rows for ``record_changes`` (one INSERT for the batch).
    """
    windows, changes = shop_windows(shop), []
    for profile in profiles:
        if profile.shop_id != shop.id:
            raise ValueError("profile belongs to another shop")
        new = stage_of(facts_of(profile, now), windows)
        old = profile.lifecycle_stage
        if new != old:
            profile.lifecycle_stage, profile.lifecycle_changed_at = new, now
            changes.append(
                {
                    "shop_id": profile.shop_id,
                    "profile_id": profile.id,
                    "type": EVENT_TYPE,
                    "source": EVENT_SOURCE,
                    "external_id": change_external_id(profile.id, new, now),
                    "identifiers": {},
                    "properties": {"from": old, "to": new, "at": now.isoformat()},
                    "occurred_at": now,
                    "received_at": now,
                }
            )
    return changes


def record_changes(changes: list[dict]) -> None:
    """Store ``refresh_lifecycles``' change events in one statement (a replayed change is stored once)."""
    from app.services.ingest.common import dialect_insert

    if changes:
        table = Event.__table__
        insert = dialect_insert()(table).on_conflict_do_nothing(
            index_elements=["shop_id", "source", "external_id"]
        )
        db.session.execute(insert, changes)


def _refresh(shop: Shop, profile: Profile, now: dt.datetime, windows: Windows) -> str:
    if profile.shop_id != shop.id:
        raise ValueError("profile belongs to another shop")
    new = stage_of(facts_of(profile, now), windows)
    old = profile.lifecycle_stage
    if new != old:
        profile.lifecycle_stage = new
        profile.lifecycle_changed_at = now
        if profile.id is None:
            db.session.flush()
        record_change(profile, old, new, now)
    return new
