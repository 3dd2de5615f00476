"""The send-time gate: consent → caps → fatigue → quiet hours, first failure answers.

``decide`` is a pure function of explicit arguments (the shop's policy,
the profile's facts, the channel, the moment), so the web console, the API
and the workers share one answer and the tests can table-drive it.
``gate_facts`` reads those arguments from the database in bulk; ``check``
and ``gate_many`` here put the two together (read-only); the atomic
check-and-reserve lives in ``messaging``.

Rules:

* the store: ``shop_uninstalled`` once the merchant uninstalled the app (before any
  other check; ``retry_at`` null: a reinstall clears it, not time).
* consent: ``erased``, ``global_unsubscribe``, ``no_consent:<channel>``;
  ``retry_at`` is null (waiting never clears these).
* caps: messages *sent* in the customer's local calendar day, across
  channels (``global_cap_reached:<n>/<cap>``) then on the channel
  (``channel_cap_reached:<channel>:<n>/<cap>``); ``retry_at`` is the next
  local midnight (null for a cap of 0).
* fatigue: sent messages in the rolling 7 days (``now - 7d < t ≤ now``)
  / 10, capped at 1.0, blocked at ≥ the threshold; ``retry_at`` is when
  enough of them leave the window. There is no override.
* quiet hours: the shop's window (or its region's, Starter+) in every
  zone the customer may be in (see ``timezones``); email is exempt;
  ``retry_at`` is the end of the window.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.services.timezones import CustomerZone

CHANNELS = ("email", "sms", "whatsapp", "push")
QUIET_EXEMPT = frozenset({"email"})
FATIGUE_WINDOW = dt.timedelta(days=7)
FATIGUE_DIVISOR = 10
OPTED_IN = "opted_in"
# Facts cover this far back: the 7-day window plus the longest possible local day.
FACTS_LOOKBACK = dt.timedelta(days=8)


@dataclass(frozen=True)
class Window:
    """A daily quiet window in local time; wraps midnight when ``start > end``."""

    start: dt.time
    end: dt.time

    def contains(self, t: dt.time) -> bool:
        """True when local time ``t`` is inside the window (start inclusive, end exclusive)."""
        t = t.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    @classmethod
    def parse(cls, spec: Mapping[str, str]) -> Window:
        """Build from ``{"start": "21:00", "end": "09:00"}``."""
        return cls(dt.time.fromisoformat(spec["start"]), dt.time.fromisoformat(spec["end"]))


@dataclass(frozen=True)
class GatePolicy:
    """The shop settings the gate obeys."""

    global_cap: int = 3
    channel_caps: Mapping[str, int] = field(
        default_factory=lambda: {"email": 5, "sms": 1, "whatsapp": 2, "push": 3}
    )
    fatigue_threshold: float = 0.7
    quiet: Window = Window(dt.time(21), dt.time(9))
    regions: Mapping[str, Window] = field(default_factory=dict)
    # The last step of the time zone chain (settings ``timezone``, else the shop's own).
    shop_timezone: str | None = None
    # The merchant uninstalled the app (``app/uninstalled``): nothing goes out on their behalf until
    # it is installed again (``c360 shop update --reinstall``).
    uninstalled: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> GatePolicy:
        """Build from ``effective_settings(shop)`` (regions already clipped by plan)."""
        caps = settings["caps"]
        quiet = settings["quiet_hours"]
        return cls(
            global_cap=int(caps["global_daily"]),
            channel_caps={c: int(caps[c]) for c in CHANNELS},
            fatigue_threshold=float(settings["fatigue_threshold"]),
            quiet=Window.parse(quiet),
            regions={code: Window.parse(w) for code, w in (quiet.get("regions") or {}).items()},
            shop_timezone=settings.get("timezone"),
        )

    def window_for(self, country: str | None) -> Window:
        """The quiet window for a customer in ``country``."""
        return self.regions.get((country or "").upper(), self.quiet)

    @property
    def fatigue_block_count(self) -> int:
        """The smallest 7-day sent count that is blocked."""
        if self.fatigue_threshold >= 1.0:
            return FATIGUE_DIVISOR
        return max(1, math.ceil(self.fatigue_threshold * FATIGUE_DIVISOR - 1e-9))


@dataclass(frozen=True)
class ProfileFacts:
    """What the gate needs to know about one profile."""

    zone: CustomerZone
    consents: Mapping[str, str | None] = field(default_factory=dict)
    globally_unsubscribed: bool = False
    erased: bool = False
    # (sent_at, channel) of messages sent in the last ``FACTS_LOOKBACK``, any order.
    sent: tuple[tuple[dt.datetime, str], ...] = ()


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer: ``allowed``, the first failing ``reason``, and when to retry."""

    allowed: bool
    reason: str | None = None
    retry_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The contract's ``{allowed, reason, retry_at}`` with an ISO ``retry_at``."""
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }


ALLOWED = GateDecision(True)


def local_day_bounds(zone: CustomerZone, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The customer's current local day as ``[midnight, next midnight)`` in UTC."""
    return _day_bounds(zone.primary, now)


# An audience shares a handful of zones and one ``now``: these pure helpers are cached by their arguments.
@functools.lru_cache(maxsize=1024)
def _day_bounds(tz: dt.tzinfo, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    day = now.astimezone(tz).date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    return start, end


@functools.lru_cache(maxsize=1024)
def local_date(tz: dt.tzinfo, now: dt.datetime) -> dt.date:
    """The calendar date in ``tz`` at ``now``."""
    return now.astimezone(tz).date()


def messaging_counts(facts: ProfileFacts, now: dt.datetime) -> dict[str, Any]:
    """Today's count (local day), per channel, and the 7-day count at ``now``."""
    start, end = local_day_bounds(facts.zone, now)
    # Every send of the local day counts, even one stamped after ``now``: a request that read the
    # clock before another took the profile's lock must still see that send (it committed first).
    today = [c for t, c in facts.sent if start <= t < end]
    week = sum(1 for t, _ in facts.sent if now - FATIGUE_WINDOW < t <= now)
    by_channel = {c: today.count(c) for c in CHANNELS}
    return {"today_count": len(today), "today_by_channel": by_channel, "last_7d_count": week}


def fatigue_of(count_7d: int) -> float:
    """Fatigue: the 7-day sent count / 10, capped at 1.0."""
    return min(count_7d / FATIGUE_DIVISOR, 1.0)


def _shop(policy: GatePolicy) -> GateDecision | None:
    """Before every other check: a store that uninstalled the app is sent nothing (no retry: waiting
    does not clear it, a reinstall does)."""
    return GateDecision(False, "shop_uninstalled") if policy.uninstalled else None


def _consent(facts: ProfileFacts, channel: str) -> GateDecision | None:
    if facts.erased:
        return GateDecision(False, "erased")
    if facts.globally_unsubscribed:
        return GateDecision(False, "global_unsubscribe")
    if facts.consents.get(channel) != OPTED_IN:
        return GateDecision(False, f"no_consent:{channel}")
    return None


def _caps(policy: GatePolicy, facts: ProfileFacts, channel: str, now: dt.datetime) -> GateDecision | None:
    start, end = local_day_bounds(facts.zone, now)
    # Every send of the local day counts, even one stamped after ``now``: a request that read the
    # clock before another took the profile's lock must still see that send (it committed first).
    today = [c for t, c in facts.sent if start <= t < end]
    total, cap = len(today), policy.global_cap
    if total >= cap:
        return GateDecision(False, f"global_cap_reached:{total}/{cap}", end if cap > 0 else None)
    on_channel, cap = today.count(channel), policy.channel_caps[channel]
    if on_channel >= cap:
        return GateDecision(
            False, f"channel_cap_reached:{channel}:{on_channel}/{cap}", end if cap > 0 else None
        )
    return None


def _fatigue(policy: GatePolicy, facts: ProfileFacts, now: dt.datetime) -> GateDecision | None:
    window = sorted(t for t, _ in facts.sent if now - FATIGUE_WINDOW < t)  # later stamps too (as caps)
    if not window or fatigue_of(len(window)) + 1e-9 < policy.fatigue_threshold:
        return None
    # The window drops below the threshold once the oldest (n - k + 1) sends have left it.
    k = policy.fatigue_block_count
    return GateDecision(False, "fatigue", window[len(window) - k] + FATIGUE_WINDOW)


def _window_end(window: Window, local: dt.datetime) -> dt.datetime:
    """The first end of the window after ``local``, in UTC.

    On the night clocks go back the end's wall time may come twice: the first may be past
    already (at 01:00 GMT, after 01:00-02:00 BST, a 01:30 end was half an hour ago), so the
    later one is taken; a retry time in the past retried a journey every minute.
    """
    day = local.date()
    if local.time().replace(tzinfo=None) >= window.end:
        day += dt.timedelta(days=1)
    at = local.astimezone(dt.UTC)
    for fold in (0, 1):
        end = dt.datetime.combine(day, window.end, tzinfo=local.tzinfo).replace(fold=fold).astimezone(dt.UTC)
        if end > at:
            return end
    return dt.datetime.combine(day + dt.timedelta(days=1), window.end, tzinfo=local.tzinfo).astimezone(dt.UTC)


def _quiet_until(window: Window, zones: Iterable, at: dt.datetime) -> dt.datetime | None:
    """The latest end of the window among the zones quiet at ``at``; None when none is quiet."""
    ends = []
    for tz in zones:
        local = at.astimezone(tz)
        if window.contains(local.time()):
            ends.append(_window_end(window, local))
    return max(ends) if ends else None


def _quiet(policy: GatePolicy, facts: ProfileFacts, channel: str, now: dt.datetime) -> GateDecision | None:
    if channel in QUIET_EXEMPT:
        return None
    return _quiet_block(policy.window_for(facts.zone.country), facts.zone.infos, now)


@functools.lru_cache(maxsize=1024)
def _quiet_block(window: Window, zones: tuple, now: dt.datetime) -> GateDecision | None:
    until = _quiet_until(window, zones, now)
    if until is None:
        return None
    # Leaving one zone's window may land in another's (fail closed): walk until all are clear.
    for _ in range(len(zones) + 2):
        later = _quiet_until(window, zones, until)
        if later is None:
            return GateDecision(False, "quiet_hours", until)
        until = max(later, until + dt.timedelta(minutes=1))
    return GateDecision(False, "quiet_hours", None)


def decide(policy: GatePolicy, facts: ProfileFacts, channel: str, now: dt.datetime) -> GateDecision:
    """Run the four checks in order; the first failure answers.

    Args:
        policy: the shop's caps, fatigue threshold and quiet windows.
        facts: the profile's consent, zone and recent sends.
        channel: email, sms, whatsapp or push.
        now: the moment to evaluate (aware).

    Returns:
        A ``GateDecision``; ``retry_at`` is when this block can clear, or None.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return (
        _shop(policy)
        or _consent(facts, channel)
        or _caps(policy, facts, channel, now)
        or _fatigue(policy, facts, now)
        or _quiet(policy, facts, channel, now)
        or ALLOWED
    )


def at_hand_over(
    policy: GatePolicy, facts: ProfileFacts, channel: str, now: dt.datetime, *, late: bool
) -> GateDecision:
    """The checks a send already allowed (and counted) must still pass when it leaves for the provider.

    Consent always: a STOP or an unsubscribe that came in since the verdict wins. Quiet hours
    too when the hand-over is ``late`` (a provider outage, a lost job): the message goes out
    now, not when it was judged. Caps and fatigue are not asked again: the send counts already.
    """
    return (
        _shop(policy)
        or _consent(facts, channel)
        or (_quiet(policy, facts, channel, now) if late else None)
        or ALLOWED
    )


def next_allowed(
    policy: GatePolicy, facts: ProfileFacts, channel: str, now: dt.datetime, until: dt.datetime
) -> dt.datetime | None:
    """The first moment in ``[now, until]`` the gate would allow (no other sends assumed)."""
    at = now
    for _ in range(32):
        decision = decide(policy, facts, channel, at)
        if decision.allowed:
            return at
        if decision.retry_at is None or decision.retry_at > until:
            return None
        at = max(decision.retry_at, at + dt.timedelta(seconds=1))
    return None


def check(shop, profile_id: int, channel: str, now: dt.datetime) -> GateDecision | None:
    """Gate one profile of ``shop`` (read-only) at ``now``, counting the sends made by then;
    None when the profile is not this shop's."""
    from app.services.gate_facts import load_facts, load_policy

    policy = load_policy(shop)
    facts = load_facts(shop, [profile_id], now, channels=[channel], policy=policy, until=now)
    facts = facts.get(profile_id)
    return None if facts is None else decide(policy, facts, channel, now)


def gate_many(shop, profile_ids: Iterable[int], channel: str, now: dt.datetime) -> dict[int, GateDecision]:
    """Gate a whole audience with bulk reads (read-only); unknown ids are left out."""
    from app.services.gate_facts import load_facts, load_policy

    policy = load_policy(shop)
    facts = load_facts(shop, profile_ids, now, channels=[channel], policy=policy, until=now)
    return {pid: decide(policy, f, channel, now) for pid, f in facts.items()}


CHANNEL_NAMES = {"email": "email", "sms": "SMS", "whatsapp": "WhatsApp", "push": "push"}


def describe(reason: str | None) -> str:
    """A reason as a person reads it: ``global_cap_reached:3/3`` is "daily cap reached (3 of 3)"."""
    if not reason:
        return ""
    name, _, rest = reason.partition(":")
    parts = rest.split(":") if rest else []
    channel = CHANNEL_NAMES.get(parts[0], parts[0]) if parts else ""
    if name == "global_cap_reached" and parts:
        return f"daily cap reached ({parts[0].replace('/', ' of ')})"
    if name == "channel_cap_reached" and len(parts) == 2:
        return f"{channel} daily cap reached ({parts[1].replace('/', ' of ')})"
    words = {
        "no_consent": f"no {channel} consent",
        "no_address": f"no {channel} address",
        "global_unsubscribe": "unsubscribed from everything",
        "fatigue": "fatigue: too many messages this week",
        "quiet_hours": "quiet hours",
        "erased": "personal data erased",
        "shop_uninstalled": "the store uninstalled the app",
    }
    return words.get(name, reason.replace("_", " "))
