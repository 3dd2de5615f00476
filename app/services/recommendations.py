"""The next best action for a customer, and the products they are due to reorder.

One action, the first rule that applies:

1. ``do_not_contact``: they unsubscribed from everything; no message may reach them.
2. ``replenish``: a product is due within a week or overdue (``replenishment``), and
   they have not churned: remind them to reorder it. Only on plans with predictions.
3. The churn band's action (``healthy``, ``drifting``, ``at_risk``, ``likely_lost``):
   what ``app.analytics.churn`` recommends for their risk.

None when nothing is known yet (a profile enrichment has not scored) or the profile
was erased or merged away.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.analytics.churn import band_of
from app.models import Profile, Shop
from app.models.base import utcnow
from app.services import replenishment


def next_best_action(
    profile: Profile, items: list[dict[str, Any]] | None, now: dt.datetime | None = None
) -> dict[str, str] | None:
    """``{"code", "text"}`` of the action to take now (see the module's rules), or None."""
    if profile.erased_at is not None or profile.merged_into_id is not None:
        return None
    if profile.globally_unsubscribed:
        return {
            "code": "do_not_contact",
            "text": "Do not message: they unsubscribed from everything. Reach them only in store or on site.",
        }
    now = now or utcnow()
    due = replenishment.reminder(items, now)
    if due is not None and profile.lifecycle_stage != "churned":
        name = due["title"] or f"product {due['product_id']}"
        when = "was due" if due["due_at"] < now else "is due"
        return {
            "code": "replenish",
            "text": f"Remind them to reorder {name}: it {when} on {due['due_at']:%d %b %Y}.",
        }
    band = band_of(profile.churn_risk)
    return None if band is None else {"code": band.key, "text": band.action}


def recommendations_section(shop: Shop, profile: Profile) -> dict[str, Any]:
    """The profile document's ``next_best_action`` (with its code) and ``replenishment``."""
    from app.services.profile_view import iso

    items = replenishment.due_items(shop, profile)
    action = next_best_action(profile, items)
    return {
        "next_best_action": action["text"] if action else None,
        "next_best_action_code": action["code"] if action else None,
        "replenishment": None
        if items is None
        else [
            {"product_id": i["product_id"], "title": i["title"], "due_at": iso(i["due_at"])} for i in items
        ],
    }
