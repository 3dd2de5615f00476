"""The customers list's filters (stage, RFM, churn band, channel opt-in) and sorts, validated.

``parse_filters`` turns query arguments into SQLAlchemy criteria for
``profile_search.search_profiles``; a value it cannot use is a
``ValidationFailed`` naming the argument, never a silent empty list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from app.analytics.churn import BAND_KEYS, band_bounds
from app.errors import ValidationFailed
from app.models import ConsentState, Profile
from app.models.profile import CHANNELS, LIFECYCLE_STAGES
from app.services.profile_search import SORTS
from app.tenancy import scoped

RFM_PATTERN = re.compile(r"^([1-5*])-([1-5*])-([1-5*])$")


@dataclass
class ListQuery:
    """The list's validated arguments and the criteria they make."""

    q: str = ""
    stage: str = ""
    rfm: str = ""
    churn: str = ""
    optin: str = ""
    sort: str = "recent"
    criteria: list = field(default_factory=list)

    def args(self, **overrides) -> dict[str, str]:
        """The non-empty arguments, for links that keep the current filters."""
        values = {k: getattr(self, k) for k in ("q", "stage", "rfm", "churn", "optin", "sort")}
        values.update(overrides)
        return {k: v for k, v in values.items() if v and not (k == "sort" and v == "recent")}


def _rfm_criteria(code: str) -> list:
    match = RFM_PATTERN.match(code)
    if not match:
        raise ValidationFailed(f"rfm {code!r} must look like 5-4-3 (use * for any score)", field="rfm")
    columns = (Profile.rfm_r, Profile.rfm_f, Profile.rfm_m)
    return [col == int(v) for col, v in zip(columns, match.groups(), strict=True) if v != "*"]


def parse_filters(shop_id: int, args: Mapping[str, str]) -> ListQuery:
    """Validate the list's query arguments into a ``ListQuery``."""
    query = ListQuery(**{k: (args.get(k) or "").strip() for k in ("q", "stage", "rfm", "churn", "optin")})
    query.sort = (args.get("sort") or "recent").strip()
    if query.sort not in SORTS:
        raise ValidationFailed(f"sort must be one of {', '.join(SORTS)}", field="sort")
    if query.stage:
        if query.stage not in LIFECYCLE_STAGES:
            raise ValidationFailed(f"stage must be one of {', '.join(LIFECYCLE_STAGES)}", field="stage")
        query.criteria.append(Profile.lifecycle_stage == query.stage)
    if query.rfm:
        query.criteria.extend(_rfm_criteria(query.rfm))
    if query.churn:
        if query.churn not in BAND_KEYS:
            raise ValidationFailed(f"churn must be one of {', '.join(BAND_KEYS)}", field="churn")
        low, high = band_bounds(query.churn)
        query.criteria.append(Profile.churn_risk >= low)
        if high != float("inf"):
            query.criteria.append(Profile.churn_risk < high)
    if query.optin:
        if query.optin not in CHANNELS:
            raise ValidationFailed(f"optin must be one of {', '.join(CHANNELS)}", field="optin")
        opted = scoped(ConsentState, shop_id, ConsentState.profile_id).where(
            ConsentState.channel == query.optin, ConsentState.status == "opted_in"
        )
        query.criteria.extend([Profile.id.in_(opted), sa.not_(Profile.globally_unsubscribed)])
    return query
