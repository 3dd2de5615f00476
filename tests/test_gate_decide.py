"""The gate's pure decision: every reason, every boundary, the short-circuit order."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from app.services.gate import GateDecision, GatePolicy, ProfileFacts, Window, decide, next_allowed
from app.services.timezones import CustomerZone, country_zones

UTC = dt.UTC
LONDON = CustomerZone(("Europe/London",), "GB", "profile")
SYDNEY = CustomerZone(("Australia/Sydney",), "AU", "profile")
ALL_IN = {c: "opted_in" for c in ("email", "sms", "whatsapp", "push")}
POLICY = GatePolicy()


def at(zone: str, *args) -> dt.datetime:
    """A local wall-clock time in ``zone`` as an aware UTC datetime."""
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def facts(zone=LONDON, sent=(), consents=ALL_IN, **kw) -> ProfileFacts:
    return ProfileFacts(zone=zone, consents=consents, sent=tuple(sent), **kw)


NOON = at("Europe/London", 2026, 11, 18, 12, 0)


def sends(n: int, channel: str = "email", start: dt.datetime = NOON - dt.timedelta(hours=3)):
    return [(start + dt.timedelta(minutes=i), channel) for i in range(n)]


def daily(n: int, channel: str = "email", end: dt.datetime = NOON):
    """One send a day on each of the ``n`` days before ``end`` (never a cap)."""
    return [(end - dt.timedelta(days=i + 1, hours=-1), channel) for i in range(n)]


NEXT_MIDNIGHT = at("Europe/London", 2026, 11, 19, 0, 0)

CASES = [
    # (name, facts, channel, now, expected allowed, reason, retry_at)
    ("allowed", facts(), "sms", NOON, True, None, None),
    ("erased", facts(erased=True, globally_unsubscribed=True), "email", NOON, False, "erased", None),
    (
        "global unsubscribe",
        facts(globally_unsubscribed=True),
        "email",
        NOON,
        False,
        "global_unsubscribe",
        None,
    ),
    ("no consent", facts(consents={"email": "opted_in"}), "sms", NOON, False, "no_consent:sms", None),
    ("opted out", facts(consents={"sms": "opted_out"}), "sms", NOON, False, "no_consent:sms", None),
    ("3rd of the day passes", facts(sent=sends(2)), "email", NOON, True, None, None),
    (
        "4th of the day blocked",
        facts(sent=sends(3)),
        "email",
        NOON,
        False,
        "global_cap_reached:3/3",
        NEXT_MIDNIGHT,
    ),
    (
        "sms channel cap",
        facts(sent=sends(1, "sms")),
        "sms",
        NOON,
        False,
        "channel_cap_reached:sms:1/1",
        NEXT_MIDNIGHT,
    ),
    (
        "whatsapp channel cap",
        facts(sent=sends(2, "whatsapp")),
        "whatsapp",
        NOON,
        False,
        "channel_cap_reached:whatsapp:2/2",
        NEXT_MIDNIGHT,
    ),
    ("other channel's cap does not block", facts(sent=sends(1, "sms")), "email", NOON, True, None, None),
    ("yesterday does not count", facts(sent=daily(1) * 1), "email", NOON, True, None, None),
    ("6 in 7 days passes", facts(sent=daily(6)), "email", NOON, True, None, None),
    (
        "7 in 7 days is fatigue",
        facts(sent=daily(7)),
        "email",
        NOON,
        False,
        "fatigue",
        NOON - dt.timedelta(days=7, hours=-1) + dt.timedelta(days=7),
    ),
    (
        "a send 7 days ago has left the window",
        facts(sent=daily(6) + [(NOON - dt.timedelta(days=7), "email")]),
        "email",
        NOON,
        True,
        None,
        None,
    ),
    ("20:59 local passes", facts(), "sms", at("Europe/London", 2026, 11, 18, 20, 59), True, None, None),
    (
        "21:00 local is quiet",
        facts(),
        "sms",
        at("Europe/London", 2026, 11, 18, 21, 0),
        False,
        "quiet_hours",
        at("Europe/London", 2026, 11, 19, 9, 0),
    ),
    (
        "08:59 local is quiet",
        facts(),
        "push",
        at("Europe/London", 2026, 11, 18, 8, 59),
        False,
        "quiet_hours",
        at("Europe/London", 2026, 11, 18, 9, 0),
    ),
    ("09:00 local passes", facts(), "whatsapp", at("Europe/London", 2026, 11, 18, 9, 0), True, None, None),
    (
        "email is exempt from quiet hours",
        facts(),
        "email",
        at("Europe/London", 2026, 11, 18, 23, 0),
        True,
        None,
        None,
    ),
    # 10:00 UTC is 10:00 in London and 21:00 in Sydney (AEDT, +11).
    (
        "London customer at 10:00 UTC",
        facts(),
        "sms",
        dt.datetime(2026, 11, 18, 10, tzinfo=UTC),
        True,
        None,
        None,
    ),
    (
        "Sydney customer at 10:00 UTC",
        facts(zone=SYDNEY),
        "sms",
        dt.datetime(2026, 11, 18, 10, tzinfo=UTC),
        False,
        "quiet_hours",
        at("Australia/Sydney", 2026, 11, 19, 9, 0),
    ),
    # DST: London springs forward on 29 March 2026 and falls back on 25 October 2026.
    (
        "London spring-forward day 09:30 BST",
        facts(),
        "sms",
        dt.datetime(2026, 3, 29, 8, 30, tzinfo=UTC),
        True,
        None,
        None,
    ),
    (
        "London spring-forward day 08:30 BST",
        facts(),
        "sms",
        dt.datetime(2026, 3, 29, 7, 30, tzinfo=UTC),
        False,
        "quiet_hours",
        dt.datetime(2026, 3, 29, 8, 0, tzinfo=UTC),
    ),
    (
        "London fall-back day 08:30 GMT",
        facts(),
        "sms",
        dt.datetime(2026, 10, 25, 8, 30, tzinfo=UTC),
        False,
        "quiet_hours",
        dt.datetime(2026, 10, 25, 9, 0, tzinfo=UTC),
    ),
    (
        "London cap on the 23-hour day clears at BST midnight",
        facts(sent=sends(3, start=dt.datetime(2026, 3, 29, 9, tzinfo=UTC))),
        "email",
        dt.datetime(2026, 3, 29, 12, tzinfo=UTC),
        False,
        "global_cap_reached:3/3",
        dt.datetime(2026, 3, 29, 23, 0, tzinfo=UTC),
    ),
    # Sydney springs forward on 4 October 2026 (AEST +10 → AEDT +11) and falls back on 5 April 2026.
    (
        "Sydney spring-forward day 08:30 AEDT",
        facts(zone=SYDNEY),
        "sms",
        dt.datetime(2026, 10, 3, 21, 30, tzinfo=UTC),
        False,
        "quiet_hours",
        dt.datetime(2026, 10, 3, 22, 0, tzinfo=UTC),
    ),
    (
        "Sydney fall-back day 20:59 AEST",
        facts(zone=SYDNEY),
        "sms",
        dt.datetime(2026, 4, 5, 10, 59, tzinfo=UTC),
        True,
        None,
        None,
    ),
    (
        "Sydney fall-back day 21:00 AEST",
        facts(zone=SYDNEY),
        "sms",
        dt.datetime(2026, 4, 5, 11, 0, tzinfo=UTC),
        False,
        "quiet_hours",
        dt.datetime(2026, 4, 5, 23, 0, tzinfo=UTC),
    ),
]


@pytest.mark.parametrize(
    ("name", "profile_facts", "channel", "now", "allowed", "reason", "retry_at"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_gate_answers_each_reason_and_boundary(name, profile_facts, channel, now, allowed, reason, retry_at):
    assert decide(POLICY, profile_facts, channel, now) == GateDecision(allowed, reason, retry_at)


QUIET_AND_CAPPED = facts(sent=sends(3, "sms", start=at("Europe/London", 2026, 11, 18, 8, 0)))
LATE = at("Europe/London", 2026, 11, 18, 22, 0)


@pytest.mark.parametrize(
    ("profile_facts", "reason"),
    [
        (facts(erased=True, globally_unsubscribed=True, sent=QUIET_AND_CAPPED.sent), "erased"),
        (facts(globally_unsubscribed=True, sent=QUIET_AND_CAPPED.sent), "global_unsubscribe"),
        (facts(consents={}, sent=QUIET_AND_CAPPED.sent), "no_consent:sms"),
        (QUIET_AND_CAPPED, "global_cap_reached:3/3"),
        (
            facts(sent=sends(1, "sms", start=at("Europe/London", 2026, 11, 18, 8, 0)) + daily(7, end=LATE)),
            "channel_cap_reached:sms:1/1",
        ),
        (facts(sent=daily(7, end=LATE)), "fatigue"),
        (facts(), "quiet_hours"),
    ],
)
def test_the_first_failing_check_answers(profile_facts, reason):
    assert decide(POLICY, profile_facts, "sms", LATE).reason == reason


def test_unsubscribed_capped_and_quiet_customer_gets_global_unsubscribe():
    unsubscribed = facts(globally_unsubscribed=True, sent=QUIET_AND_CAPPED.sent)
    assert decide(POLICY, unsubscribed, "sms", LATE) == GateDecision(False, "global_unsubscribe", None)


def test_a_zero_cap_cannot_clear_by_waiting():
    policy = GatePolicy(channel_caps={"email": 5, "sms": 0, "whatsapp": 2, "push": 3})
    assert decide(policy, facts(), "sms", NOON) == GateDecision(False, "channel_cap_reached:sms:0/0", None)


def test_fatigue_threshold_follows_the_shop_setting():
    strict = GatePolicy(fatigue_threshold=0.5)
    assert decide(strict, facts(sent=daily(4)), "email", NOON).allowed
    assert decide(strict, facts(sent=daily(5)), "email", NOON).reason == "fatigue"
    assert decide(GatePolicy(fatigue_threshold=1.0), facts(sent=daily(9)), "email", NOON).allowed


def test_regional_window_applies_to_customers_of_that_country():
    policy = GatePolicy(regions={"AU": Window(dt.time(20), dt.time(8))})
    half_past_eight = at("Australia/Sydney", 2026, 11, 18, 20, 30)
    assert decide(POLICY, facts(zone=SYDNEY), "sms", half_past_eight).allowed
    decision = decide(policy, facts(zone=SYDNEY), "sms", half_past_eight)
    assert decision == GateDecision(False, "quiet_hours", at("Australia/Sydney", 2026, 11, 19, 8, 0))
    assert decide(policy, facts(), "sms", at("Europe/London", 2026, 11, 18, 20, 30)).allowed


US_BY_PHONE = CustomerZone(country_zones("US"), "US", "phone")


def test_us_customer_by_phone_fails_closed_across_every_us_zone():
    # 14:00 UTC in January: 09:00 in New York but 06:00 in Los Angeles and 04:00 in Honolulu.
    decision = decide(POLICY, facts(zone=US_BY_PHONE), "sms", dt.datetime(2026, 1, 15, 14, tzinfo=UTC))
    assert decision == GateDecision(False, "quiet_hours", dt.datetime(2026, 1, 15, 19, tzinfo=UTC))
    assert decide(POLICY, facts(zone=US_BY_PHONE), "sms", dt.datetime(2026, 1, 15, 19, tzinfo=UTC)).allowed
    # 02:00 UTC is 21:00 in New York: quiet although it is 16:00 in Honolulu.
    assert not decide(POLICY, facts(zone=US_BY_PHONE), "sms", dt.datetime(2026, 1, 16, 2, tzinfo=UTC)).allowed


def test_next_allowed_walks_past_caps_into_the_morning():
    capped = facts(sent=sends(3))
    opening = next_allowed(POLICY, capped, "sms", NOON, NOON + dt.timedelta(days=2))
    assert opening == at("Europe/London", 2026, 11, 19, 9, 0)
    assert next_allowed(POLICY, capped, "sms", NOON, NOON + dt.timedelta(hours=6)) is None
    assert next_allowed(POLICY, facts(consents={}), "sms", NOON, NOON + dt.timedelta(days=9)) is None


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        decide(POLICY, facts(), "sms", dt.datetime(2026, 1, 1, 12))
    with pytest.raises(ValueError, match="channel"):
        decide(POLICY, facts(), "fax", NOON)


NEW_YORK = CustomerZone(("America/New_York",), "US", "profile")


@pytest.mark.parametrize(
    ("zone", "now", "opens"),
    [
        # London, 25 Oct 2026: 01:00-02:00 BST, then 01:00-02:00 GMT again. At 01:00 GMT (01:00Z)
        # a window ending 01:30 ends at the second 01:30, 01:30Z: the first was half an hour ago.
        (LONDON, dt.datetime(2026, 10, 25, 1, 0, tzinfo=UTC), dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
        (LONDON, dt.datetime(2026, 10, 25, 0, 10, tzinfo=UTC), dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        # New York, 1 Nov 2026: 01:00-02:00 EDT, then EST.
        (NEW_YORK, dt.datetime(2026, 11, 1, 6, 0, tzinfo=UTC), dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_a_quiet_window_ending_in_the_hour_clocks_repeat_opens_after_now(zone, now, opens):
    """The window's end was taken at the hour's first pass: a retry time already past, a journey
    retried every minute and a time-sensitive message missed though its window opened soon."""
    policy = GatePolicy(quiet=Window(dt.time(23), dt.time(1, 30)))
    decision = decide(policy, facts(zone=zone), "sms", now)
    assert (decision.reason, decision.retry_at) == ("quiet_hours", opens)
    assert next_allowed(policy, facts(zone=zone), "sms", now, now + dt.timedelta(hours=24)) == opens


def test_a_store_that_uninstalled_the_app_is_refused_before_any_other_check():
    """Even for a customer the other checks would refuse for their own reason: the store comes first."""
    import dataclasses

    from app.services.gate import at_hand_over

    gone = dataclasses.replace(POLICY, uninstalled=True)
    for profile_facts in (facts(), facts(erased=True), facts(consents={})):
        decision = decide(gone, profile_facts, "sms", NOON)
        assert (decision.allowed, decision.reason, decision.retry_at) == (False, "shop_uninstalled", None)
    assert at_hand_over(gone, facts(), "email", NOON, late=False).reason == "shop_uninstalled"
