"""The scores a new signal moves, kept current between enrichment runs.

Enrichment scores the whole shop once a day: F and M are quintiles of every
buyer, and the predictions read every buyer's history. Two parts of a
person's scores depend on their own moments only: R (whole days since the
last order) and churn risk's recency (whole days since the last activity of
any kind). Left to the next run, a customer who bought an hour ago stayed
"likely lost" (in the win-back filter, with a last-chance action on the
page) for up to a day. Ingest, merges and undo refresh those two parts here,
with the F and M of the last run, and take RFM away from a customer whose
every order was refunded or cancelled (no longer a buyer, as the next run
would say); a profile no run has scored yet is left for it.
"""

from __future__ import annotations

import datetime as dt

from app.analytics import churn, rfm
from app.models import Profile, Shop
from app.services.lifecycle import quiet_days, shop_windows, whole_days


def refresh_scores(profile: Profile, now: dt.datetime, churned_days: int) -> bool:
    """Bring R and churn risk up to date (and RFM away from a buyer no more); True when any moved."""
    if profile.churn_risk is None:
        return False  # never scored: the next run scores every part at once
    bought = (profile.order_count or 0) > 0 and profile.last_order_at is not None
    if bought:
        r, f, m = rfm.recency_of(whole_days(now, profile.last_order_at)), profile.rfm_f, profile.rfm_m
    else:
        r = f = m = None  # every order refunded or cancelled: no longer a buyer, as a run would say
    risk = churn.risk_of(quiet_days(profile, now), f, m, churned_days)
    if (r, f, m, risk) == (profile.rfm_r, profile.rfm_f, profile.rfm_m, profile.churn_risk):
        return False
    profile.rfm_r, profile.rfm_f, profile.rfm_m, profile.churn_risk = r, f, m, risk
    return True


def refresh_all(shop: Shop, profiles, now: dt.datetime) -> list[Profile]:
    """``refresh_scores`` for profiles of ``shop`` with its churn window read once; those that moved."""
    churned_days = shop_windows(shop).churned_days
    return [p for p in profiles if refresh_scores(p, now, churned_days)]
