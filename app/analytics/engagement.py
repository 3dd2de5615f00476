"""The engagement score: 0–100, with recency decay.

Each customer-originated event *e* carries a weight ``w(e)`` (the table
``WEIGHTS``, keyed by the action at the end of the event type) and
loses half its value every ``HALF_LIFE_DAYS`` days::

    A     = Σ w(e) · 2^(−age_days(e) / 30)
    score = 100 · (1 − e^(−A / 10))

So ten email opens today give A = 10 and a score of 63; the same opens
thirty days ago count half (A = 5, score 39). Sends, deliveries, bounces,
dismissals and system events (``lifecycle.changed``…) weigh nothing:
only what the person did counts. ``A`` is summed in SQL by the loader
(twenty million events do not belong in memory); this module turns it
into the score and owns the weights and constants both sides use.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from app.errors import ValidationFailed

HALF_LIFE_DAYS = 30.0
SCALE = 10.0
# Action (the end of the event type) → weight. Anything else weighs 0.
WEIGHTS: dict[str, float] = {
    "opened": 1.0,
    "clicked": 3.0,
    "replied": 4.0,
    "page_viewed": 0.5,
    "product_viewed": 1.0,
    "search_submitted": 1.0,
    "form_submitted": 2.0,
    "product_added_to_cart": 2.0,
    "checkout_started": 3.0,
    "checkout_completed": 5.0,
    "visit": 3.0,
}
# What a provider reports about a message (the action at the end of the event type), and the
# events the system records: not something the person did, so not a sighting of them either.
OUTCOMES = frozenset(
    {
        "sent",
        "sending",
        "queued",
        "accepted",
        "scheduled",
        "processed",
        "deferred",
        "delivered",
        "bounced",
        "dropped",
        "failed",
        "undelivered",
        "canceled",
        "machine_opened",  # a mail client's privacy proxy, not the person (ingest.sendgrid)
    }
)
# Events of someone else's doing: the system's (a stage change, a merge), and the merchant's as
# Shopify reports them (customers/update fires for every tag a merchant adds; a cancellation or a
# refund is made in the admin, often weeks after the purchase).
OTHERS_DOING = frozenset(
    {
        "lifecycle.changed",
        "profile.merged",
        "customer.updated",
        "customer.deleted",
        "order.cancelled",
        "order.refunded",
    }
)
# Actions that count as engaging with a message (drive ``last_engaged_at``).
MESSAGE_ACTIONS = ("opened", "clicked", "replied")
FORMULA = "score = 100 · (1 − e^(−A/10)), A = Σ weight · 2^(−age in days / 30)"


def weight_of(event_type: str) -> float:
    """The weight of an event type, by the action at its end (``email.opened`` → ``opened``)."""
    return WEIGHTS.get(event_type.rsplit(".", 1)[-1], 0.0)


def is_persons_doing(event_type: str) -> bool:
    """True unless the event is a provider's report on a message (sent, delivered, bounced…), the
    system's own (a stage change, a merge) or the merchant's (``OTHERS_DOING``): what moves a
    profile's ``last_seen_at``."""
    return event_type not in OTHERS_DOING and event_type.rsplit(".", 1)[-1] not in OUTCOMES


def is_message_engagement(event_type: str) -> bool:
    """True for an open, click or reply of a message on any channel."""
    return event_type.rsplit(".", 1)[-1] in MESSAGE_ACTIONS


def decay(age_days: float) -> float:
    """The share of an event's weight left after ``age_days``."""
    return math.pow(2.0, -max(age_days, 0.0) / HALF_LIFE_DAYS)


def engagement_score(activity: pd.Series) -> pd.Series:
    """Map decayed activity ``A`` (≥ 0, NaN for none) to the 0–100 score, one decimal."""
    if not isinstance(activity, pd.Series):
        raise ValidationFailed("activity must be a Series")
    values = pd.to_numeric(activity, errors="coerce").fillna(0.0)
    if (values < 0).any():
        raise ValidationFailed("decayed activity cannot be negative")
    return (100.0 * (1.0 - np.exp(-values / SCALE))).round(1)
