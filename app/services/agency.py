"""The agency roll-up: coverage, lifecycle mix and fatigue posture of each managed shop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.models import Membership
from app.plans import has_capability
from app.services.stats import shop_stats


@dataclass
class ShopRollup:
    """One row of the roll-up: a shop, the viewer's role in it, and its totals."""

    shop_id: int
    domain: str
    plan: str
    role: str
    stats: dict[str, Any]
    currency: str = ""  # each shop's revenue is in its own currency: never summed, always labelled


def can_view_rollup(memberships: list[Membership]) -> bool:
    """Agency users (or owners) on a plan with the agency roll-up see it."""
    return any(
        m.role in ("agency", "owner") and has_capability(m.shop.plan, "agency_rollup") for m in memberships
    )


def rollup(memberships: list[Membership]) -> list[ShopRollup]:
    """Totals for every shop the user belongs to, each read through its own shop scope."""
    rows = [
        ShopRollup(m.shop_id, m.shop.domain, m.shop.plan, m.role, shop_stats(m.shop_id), m.shop.currency)
        for m in memberships
    ]
    return sorted(rows, key=lambda r: r.domain)
