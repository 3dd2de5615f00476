"""Plan tiers as one plan → capabilities map.

Services, the API and templates ask ``has_capability(plan, name)``;
features register what they need in ``CAPABILITIES`` instead of comparing
plan names, so a plan change is an edit to this table alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

PLAN_ORDER = ("free", "starter", "pro", "agency", "enterprise")


@dataclass(frozen=True)
class Plan:
    """One tier: its limits and the capabilities it unlocks."""

    name: str
    label: str
    monthly_price_usd: int
    max_profiles: int | None
    max_shops: int
    merge_undo_window: dt.timedelta
    capabilities: frozenset[str] = field(default_factory=frozenset)


# Capability → the cheapest plan that has it. Later features add their line here.
CAPABILITIES: dict[str, str] = {
    "regional_quiet_hours": "starter",
    "segments": "starter",
    "journeys": "starter",
    "custom_lifecycle_thresholds": "pro",
    "predictions": "pro",
    "attribution": "pro",
    "marketplaces": "pro",
    "agency_rollup": "agency",
    "sso": "enterprise",
}

_LIMITS = {
    # name: (label, price, max_profiles, max_shops, undo window)
    "free": ("Free", 0, 1_000, 1, dt.timedelta(hours=24)),
    "starter": ("Starter", 49, 10_000, 1, dt.timedelta(days=7)),
    "pro": ("Pro", 199, 100_000, 1, dt.timedelta(days=7)),
    "agency": ("Agency", 499, 250_000, 25, dt.timedelta(days=30)),
    "enterprise": ("Enterprise", 1_500, None, 1_000, dt.timedelta(days=90)),
}


def _capabilities_of(plan_name: str) -> frozenset[str]:
    rank = PLAN_ORDER.index(plan_name)
    return frozenset(c for c, cheapest in CAPABILITIES.items() if PLAN_ORDER.index(cheapest) <= rank)


PLANS: dict[str, Plan] = {
    name: Plan(name, label, price, profiles, shops, window, _capabilities_of(name))
    for name, (label, price, profiles, shops, window) in _LIMITS.items()
}


def get_plan(name: str) -> Plan:
    """Return the plan called ``name``; an unknown name is a programming error."""
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown plan {name!r}; expected one of {', '.join(PLAN_ORDER)}") from None


def has_capability(plan_name: str, capability: str) -> bool:
    """True when ``plan_name`` includes ``capability``."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")
    return capability in get_plan(plan_name).capabilities
