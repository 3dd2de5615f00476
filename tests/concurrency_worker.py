"""A process that hammers ``send_message`` (spawned by the concurrency test and the benchmark)."""

from __future__ import annotations

import datetime as dt


def hammer(database_url: str, shop_id: int, profile_ids: list[int], rounds: int, now_iso: str) -> int:
    """Send ``rounds`` emails to each profile from a fresh app; return how many were sent."""
    from app import create_app
    from app.extensions import db
    from app.models import Shop
    from app.services.messaging import send_message

    app = create_app(
        {"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": None}
    )
    now = dt.datetime.fromisoformat(now_iso)
    sent = 0
    with app.app_context():
        shop = db.session.get(Shop, shop_id)
        for _ in range(rounds):
            for pid in profile_ids:
                sent += send_message(shop, pid, "email", "campaign", "storm", now=now).status == "sent"
        db.engine.dispose()
    return sent
