"""Give a profile again the names, address and currency of Shopify versions that reached it.

Undo puts both profiles back as they were at the merge; a customer who changed their name or
moved during the merge sent that change to the survivor. Each such version's delivery is read
again and applied to the side its event went to, in time order, by the same rule as ingest
(``update_details``: only a version at least as new as the profile's overwrites it).
"""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Event, Profile, WebhookDelivery
from app.services.ingest.common import load_json, refresh_search_text, update_details


def reapply(profiles: dict[int, Profile], events: list[Event]) -> None:
    """Apply the versions ``events`` name (their deliveries) to their profiles among ``profiles``."""
    from app.services.ingest.customers import customer_details
    from app.services.ingest.orders import order_details

    ids = sorted({e.delivery_id for e in events})
    deliveries = {
        d.id: d for d in db.session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    }
    touched = set()
    for event in sorted(events, key=lambda e: (e.occurred_at, e.id)):
        profile, delivery = profiles.get(event.profile_id), deliveries.get(event.delivery_id)
        if profile is None or delivery is None or delivery.provider != "shopify":
            continue
        payload = load_json(delivery.body, "the stored body")
        if not isinstance(payload, dict):
            continue
        details = customer_details if event.type.startswith("customer.") else order_details
        update_details(profile, *details(payload))
        touched.add(profile)
    for profile in touched:
        refresh_search_text(profile)
