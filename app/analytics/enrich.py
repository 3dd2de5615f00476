"""The whole-shop enrichment as one DataFrame → DataFrame step.

Joins the three bulk reads (profiles, order stats, event stats), derives
each person's facts as of a moment, and applies the lifecycle rules, the
engagement score, RFM, churn risk and (when the plan has them)
predictions. Vectorised throughout: no Python loop over profiles.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from app.analytics.churn import churn_risk
from app.analytics.engagement import engagement_score
from app.analytics.predictions import predict
from app.analytics.rfm import rfm_scores
from app.analytics.validate import days_since, require_aware, require_columns
from app.services.lifecycle import DAY, Facts, Windows, stages_of

PROFILE_COLUMNS = ("lifecycle_stage", "first_seen_at", "last_seen_at", "last_engaged_at")
ORDER_COLUMNS = ("orders", "spend", "first_order_at", "last_order_at", "occasions")
EVENT_COLUMNS = ("activity", "first_active_at", "last_active_at", "last_message_engaged_at")
OUTPUT_COLUMNS = (
    "lifecycle_stage",
    "previous_stage",
    "engagement_score",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "churn_risk",
    "predicted_ltv_90d",
    "predicted_next_order_at",
    "has_evidence",
)


def _known_by(series: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Drop moments after ``as_of``: a backtest must not see the future."""
    return series.where(series <= as_of)


def person_facts(
    profiles: pd.DataFrame, orders: pd.DataFrame, events: pd.DataFrame, as_of: dt.datetime
) -> pd.DataFrame:
    """One row per profile with orders, spend, AOV and activity moments as of ``as_of``."""
    require_columns(profiles, PROFILE_COLUMNS, "profiles")
    require_columns(orders, ORDER_COLUMNS, "order stats")
    require_columns(events, EVENT_COLUMNS, "event stats")
    moment = require_aware(as_of)
    frame = profiles.join(orders, how="left").join(events, how="left")
    # An empty read comes back as object columns: make every number a float first.
    for name in ("orders", "spend", "activity", "occasions"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64").fillna(0.0)
    frame["orders"] = frame["orders"].astype("int64")
    frame["aov"] = frame["spend"] / frame["orders"].where(frame["orders"] > 0)
    seen = {c: _known_by(frame[c], moment) for c in ("first_seen_at", "last_seen_at", "last_engaged_at")}
    frame["engaged_at"] = pd.concat([seen["last_engaged_at"], frame["last_message_engaged_at"]], axis=1).max(
        axis=1
    )
    frame["last_at"] = pd.concat(
        [seen["last_seen_at"], frame["last_active_at"], frame["engaged_at"], frame["last_order_at"]], axis=1
    ).max(axis=1)
    frame["first_at"] = pd.concat(
        [seen["first_seen_at"], frame["first_active_at"], frame["first_order_at"]], axis=1
    ).min(axis=1)
    frame["days_since_order"] = days_since(moment, frame["last_order_at"])
    frame["days_since_activity"] = days_since(moment, frame["last_at"])
    return frame


def lifecycle_stages(frame: pd.DataFrame, windows: Windows) -> np.ndarray:
    """Apply ``app.services.lifecycle.STAGE_RULES`` to every row at once."""
    buyer = frame["orders"] > 0
    quiet = frame["days_since_order"].where(buyer, frame["days_since_activity"]).fillna(0.0)
    returning = frame["engaged_at"].notna() | ((frame["last_at"] - frame["first_at"]) >= DAY)
    facts = Facts(
        orders=frame["orders"].to_numpy(), quiet=quiet.to_numpy(), returning=returning.to_numpy(dtype=bool)
    )
    return stages_of(facts, windows)


def enrichment_frame(
    profiles: pd.DataFrame,
    orders: pd.DataFrame,
    events: pd.DataFrame,
    *,
    as_of: dt.datetime,
    windows: Windows,
    predictions: bool,
) -> pd.DataFrame:
    """Every enrichment column for every profile (see ``OUTPUT_COLUMNS``)."""
    frame = person_facts(profiles, orders, events, as_of)
    out = pd.DataFrame(index=frame.index)
    out["previous_stage"] = frame["lifecycle_stage"]
    out["lifecycle_stage"] = lifecycle_stages(frame, windows)
    out["engagement_score"] = engagement_score(frame["activity"])
    scores = rfm_scores(frame)
    out[scores.columns] = scores
    frame[scores.columns] = scores
    out["churn_risk"] = churn_risk(frame, windows.churned_days)
    if predictions:
        frame["churn_risk"] = out["churn_risk"]
        out[["predicted_next_order_at", "predicted_ltv_90d"]] = predict(frame)[
            ["predicted_next_order_at", "predicted_ltv_90d"]
        ]
    else:
        out["predicted_next_order_at"] = pd.NaT
        out["predicted_ltv_90d"] = np.nan
    # A backtest leaves out people of whom nothing was known yet on that date.
    out["has_evidence"] = frame["first_at"].notna() | (frame["orders"] > 0)
    return out[list(OUTPUT_COLUMNS)]
