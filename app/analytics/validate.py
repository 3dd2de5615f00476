"""Input checks shared by the analytics functions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd

from app.errors import ValidationFailed


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ``ValidationFailed`` unless ``frame`` has every column named."""
    if not isinstance(frame, pd.DataFrame):
        raise ValidationFailed(f"{what} must be a DataFrame")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationFailed(f"{what} lacks columns {missing}")


def require_aware(moment: dt.datetime, what: str = "as_of") -> pd.Timestamp:
    """Return ``moment`` as a UTC Timestamp; a naive datetime is refused."""
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None:
        raise ValidationFailed(f"{what} must be a timezone-aware datetime")
    return pd.Timestamp(moment).tz_convert("UTC")


def days_since(as_of: pd.Timestamp, moments: pd.Series) -> pd.Series:
    """Completed days from each moment to ``as_of`` (NaN where unknown, never negative)."""
    delta = (as_of - moments) / pd.Timedelta(days=1)
    return delta.clip(lower=0) // 1
