"""Lifecycle stages: golden boundaries, one stage for every profile, change events."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ValidationFailed
from app.extensions import db
from app.models import Event
from app.models.profile import LIFECYCLE_STAGES
from app.services.lifecycle import Facts, Windows, matching_stages, refresh_lifecycle, stage_of, stages_of
from tests.enrichment_helpers import NOW, add_order, add_profile, days_ago

DEFAULT = Windows(30, 90)


# Hand-computed: quiet days since the last order against the default windows 30 / 90.
ONE_ORDER = [
    (0, "converted"),
    (29, "converted"),
    (30, "at_risk"),
    (31, "at_risk"),
    (89, "at_risk"),
    (90, "churned"),
    (91, "churned"),
]
REPEAT = [(29, "loyal"), (30, "at_risk"), (89, "at_risk"), (90, "churned")]


def test_one_order_buyer_moves_through_stages_at_the_window_boundaries(shop):
    for days, stage in ONE_ORDER:
        profile = add_profile(shop.id, seen_days_ago=days)
        add_order(profile, days_ago(days))
        assert refresh_lifecycle(shop.model, profile, NOW) == stage, days


def test_repeat_buyer_is_loyal_until_the_at_risk_window(shop):
    for days, stage in REPEAT:
        profile = add_profile(shop.id, seen_days_ago=200)
        add_order(profile, days_ago(200))
        add_order(profile, days_ago(days))
        assert refresh_lifecycle(shop.model, profile, NOW) == stage, days


def test_buyer_who_only_browses_is_quiet_from_the_last_order(shop):
    profile = add_profile(shop.id, seen_days_ago=0)
    add_order(profile, days_ago(45))
    assert refresh_lifecycle(shop.model, profile, NOW) == "at_risk"


def test_visitor_seen_once_is_new_and_returning_visitor_is_engaged(shop):
    once = add_profile(shop.id, seen_days_ago=2)
    back = add_profile(shop.id, seen_days_ago=10)
    back.last_seen_at = days_ago(1)
    assert refresh_lifecycle(shop.model, once, NOW) == "new"
    assert refresh_lifecycle(shop.model, back, NOW) == "engaged"


def test_an_email_click_makes_a_non_buyer_engaged(shop):
    profile = add_profile(shop.id, seen_days_ago=3, last_engaged_at=days_ago(3))
    assert refresh_lifecycle(shop.model, profile, NOW) == "engaged"


def test_quiet_visitor_goes_at_risk_then_churned(shop):
    assert refresh_lifecycle(shop.model, add_profile(shop.id, seen_days_ago=30), NOW) == "at_risk"
    assert refresh_lifecycle(shop.model, add_profile(shop.id, seen_days_ago=90), NOW) == "churned"


def test_custom_windows_on_pro_move_the_boundaries(shop):
    model = shop.model
    model.settings = {"lifecycle": {"at_risk_days": 14, "churned_days": 60}}
    profile = add_profile(shop.id, seen_days_ago=20)
    add_order(profile, days_ago(14))
    assert refresh_lifecycle(model, profile, NOW) == "at_risk"


def test_a_stage_change_is_recorded_as_an_event_with_from_to_and_time(shop):
    profile = add_profile(shop.id, seen_days_ago=1)
    refresh_lifecycle(shop.model, profile, NOW)
    add_order(profile, days_ago(0.5))
    refresh_lifecycle(shop.model, profile, NOW)
    refresh_lifecycle(shop.model, profile, NOW)  # no change: no event
    db.session.commit()
    events = db.session.scalars(sa.select(Event).where(Event.type == "lifecycle.changed")).all()
    assert [(e.properties["from"], e.properties["to"]) for e in events] == [("new", "converted")]
    assert events[0].occurred_at == NOW and events[0].profile_id == profile.id
    assert profile.lifecycle_changed_at == NOW


def test_windows_must_have_at_risk_shorter_than_churned():
    with pytest.raises(ValidationFailed):
        Windows(90, 90)


facts = st.builds(
    Facts,
    orders=st.integers(min_value=0, max_value=50),
    quiet=st.integers(min_value=0, max_value=2000),
    returning=st.booleans(),
)
windows = st.integers(min_value=1, max_value=400).flatmap(
    lambda a: st.builds(Windows, st.just(a), st.integers(min_value=a + 1, max_value=800))
)


@settings(max_examples=300, deadline=None)
@given(facts, windows)
def test_every_profile_is_in_exactly_one_stage(f, w):
    matches = matching_stages(f, w)
    assert len(matches) == 1 and matches[0] in LIFECYCLE_STAGES


@settings(max_examples=50, deadline=None)
@given(st.lists(facts, min_size=1, max_size=30), windows)
def test_vectorised_stages_agree_with_the_scalar_rules(rows, w):
    arrays = Facts(
        orders=np.array([r.orders for r in rows]),
        quiet=np.array([r.quiet for r in rows], dtype=float),
        returning=np.array([r.returning for r in rows]),
    )
    assert list(stages_of(arrays, w)) == [stage_of(r, w) for r in rows]


def test_refresh_rejects_a_profile_of_another_shop(shop, other_shop):
    profile = add_profile(other_shop.id, seen_days_ago=1)
    with pytest.raises(ValueError):
        refresh_lifecycle(shop.model, profile, NOW)


def test_free_plan_ignores_stored_custom_windows(db):
    from tests.helpers import make_shop

    free = make_shop("free.myshopify.com", plan="free")
    model = free.model
    model.settings = {"lifecycle": {"at_risk_days": 5, "churned_days": 10}}
    profile = add_profile(free.id, seen_days_ago=8)
    add_order(profile, days_ago(8))
    assert refresh_lifecycle(model, profile, NOW) == "converted"
