"""Churn risk 0–1 and its bands with the action each band calls for.

``risk = 0.60 · recency + 0.25 · frequency + 0.15 · monetary``, each
component in [0, 1] and normalised within the shop:

* recency — days since the person's last activity of any kind (order,
  visit, open, click, reply) divided by the shop's churn window, capped
  at 1 (never active: 1);
* frequency — ``(5 − F) / 4`` from the RFM F quintile (non-buyers: 1);
* monetary — ``(5 − M) / 4`` from the RFM M quintile (non-buyers: 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from app.analytics.validate import require_columns
from app.errors import ValidationFailed

WEIGHTS = {"recency": 0.60, "frequency": 0.25, "monetary": 0.15}


@dataclass(frozen=True)
class Band:
    """A churn-risk band: its upper bound (exclusive), label and recommended action."""

    key: str
    label: str
    upper: float
    action: str


BANDS: tuple[Band, ...] = (
    Band("healthy", "Healthy", 0.3, "Keep them in regular campaigns; ask for a review or a referral."),
    Band("drifting", "Drifting", 0.5, "Send a personal recommendation based on what they bought or viewed."),
    Band("at_risk", "At risk", 0.7, "Win them back now: a time-limited offer on a favourite category."),
    Band(
        "likely_lost",
        "Likely lost",
        float("inf"),
        "Last-chance win-back, then leave them out of regular sends to protect deliverability.",
    ),
)
BAND_KEYS = tuple(b.key for b in BANDS)


def band_of(risk: float | None) -> Band | None:
    """The band a risk falls in (healthy < 0.3 ≤ drifting < 0.5 ≤ at risk < 0.7 ≤ likely lost)."""
    if risk is None:
        return None
    return next(b for b in BANDS if risk < b.upper)


def band_bounds(key: str) -> tuple[float, float]:
    """``[low, high)`` of a band, for filtering stored risks."""
    keys = list(BAND_KEYS)
    if key not in keys:
        raise ValidationFailed(f"unknown churn band {key!r}; expected one of {', '.join(keys)}")
    i = keys.index(key)
    return (0.0 if i == 0 else BANDS[i - 1].upper), BANDS[i].upper


def components_of(
    quiet_days: float | None, rfm_f: int | None, rfm_m: int | None, churned_days: int
) -> dict[str, float]:
    """The three components for one person (``churn_components`` for one row)."""
    return {
        "recency": 1.0 if quiet_days is None else min(max(quiet_days / churned_days, 0.0), 1.0),
        "frequency": 1.0 if rfm_f is None else (5 - rfm_f) / 4,
        "monetary": 1.0 if rfm_m is None else (5 - rfm_m) / 4,
    }


def risk_of(quiet_days: float | None, rfm_f: int | None, rfm_m: int | None, churned_days: int) -> float:
    """The weighted risk of one person (``churn_risk`` for one row)."""
    parts = components_of(quiet_days, rfm_f, rfm_m, churned_days)
    return round(min(max(sum(parts[name] * weight for name, weight in WEIGHTS.items()), 0.0), 1.0), 3)


def churn_components(frame: pd.DataFrame, churned_days: int) -> pd.DataFrame:
    """The three components for ``days_since_activity``, ``rfm_f`` and ``rfm_m`` columns."""
    require_columns(frame, ("days_since_activity", "rfm_f", "rfm_m"), "churn input")
    if churned_days <= 0:
        raise ValidationFailed("churned_days must be positive")
    out = pd.DataFrame(index=frame.index)
    out["recency"] = (frame["days_since_activity"] / churned_days).clip(0, 1).fillna(1.0)
    out["frequency"] = ((5 - frame["rfm_f"]) / 4).fillna(1.0)
    out["monetary"] = ((5 - frame["rfm_m"]) / 4).fillna(1.0)
    return out


def churn_risk(frame: pd.DataFrame, churned_days: int) -> pd.Series:
    """The weighted risk in [0, 1], rounded to three decimals."""
    parts = churn_components(frame, churned_days)
    risk = sum(parts[name] * weight for name, weight in WEIGHTS.items())
    return risk.clip(0, 1).round(3)
