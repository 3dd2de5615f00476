"""Properties of the gate over random histories, zones and moments (small hypothesis budget)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.gate import CHANNELS, GatePolicy, ProfileFacts, decide
from app.services.timezones import CustomerZone, country_zones

ZONES = [
    CustomerZone(("Europe/London",), "GB", "profile"),
    CustomerZone(("Australia/Sydney",), "AU", "profile"),
    CustomerZone(("America/Los_Angeles",), "US", "profile"),
    CustomerZone(country_zones("US"), "US", "phone"),
    CustomerZone(country_zones("AU"), "AU", "phone"),
]
ALL_IN = dict.fromkeys(CHANNELS, "opted_in")
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

moments = st.integers(0, 365 * 24 * 60).map(lambda m: START + dt.timedelta(minutes=m))
histories = st.lists(st.tuples(st.integers(1, 8 * 24 * 60), st.sampled_from(CHANNELS)), max_size=12)


def kind(reason: str | None) -> str | None:
    return reason.split(":", 1)[0] if reason else None


@settings(max_examples=150, deadline=None)
@given(moments, histories, st.sampled_from(ZONES), st.sampled_from(CHANNELS))
def test_a_block_has_cleared_by_its_retry_at(now, history, zone, channel):
    sent = tuple((now - dt.timedelta(minutes=ago), c) for ago, c in history)
    facts = ProfileFacts(zone=zone, consents=ALL_IN, sent=sent)
    decision = decide(GatePolicy(), facts, channel, now)
    if decision.allowed:
        assert decision.reason is None and decision.retry_at is None
        return
    assert decision.retry_at is not None and decision.retry_at > now
    later = decide(GatePolicy(), facts, channel, decision.retry_at)
    assert kind(later.reason) != kind(decision.reason)
    # A minute earlier the same block still held: retry_at is the earliest moment, not just a later one.
    just_before = decide(GatePolicy(), facts, channel, decision.retry_at - dt.timedelta(minutes=1))
    assert kind(just_before.reason) == kind(decision.reason)


@settings(max_examples=100, deadline=None)
@given(moments, histories, st.sampled_from(ZONES))
def test_email_is_never_refused_for_quiet_hours(now, history, zone):
    sent = tuple((now - dt.timedelta(minutes=ago), c) for ago, c in history)
    decision = decide(GatePolicy(), ProfileFacts(zone=zone, consents=ALL_IN, sent=sent), "email", now)
    assert decision.reason != "quiet_hours"
