"""A shop's settings: defaults, validation, and what the plan lets it change.

``effective_settings`` is what every service reads (lifecycle windows,
caps, fatigue threshold, quiet hours, identity blocklist); ``update_settings``
is the one writer, used by ``PUT /api/v1/settings`` and the Settings screen.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

from app.errors import Forbidden, ValidationFailed
from app.models import Shop
from app.plans import has_capability
from app.services.timezones import check_zone, country_zones, is_valid_zone

DEFAULTS: dict[str, Any] = {
    "timezone": None,  # None: the shop's own time zone
    "lifecycle": {"at_risk_days": 30, "churned_days": 90},
    "caps": {"global_daily": 3, "email": 5, "sms": 1, "whatsapp": 2, "push": 3},
    "fatigue_threshold": 0.7,
    "quiet_hours": {"start": "21:00", "end": "09:00", "regions": {}},
    "identity": {"blocked_values": [], "max_identifiers_per_kind": 10, "max_people_per_identifier": 3},
}
CAP_KEYS = ("global_daily", "email", "sms", "whatsapp", "push")
MAX_BLOCKED_VALUES = 1000
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _deep_merge(base: dict, patch: dict) -> dict:
    """``patch`` over ``base``, object by object: a key not given keeps its value.

    Quiet-hours regions merge too (giving NZ keeps AU); a region given as null is removed.
    """
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
            if key == "regions":
                out[key] = {code: window for code, window in out[key].items() if window is not None}
        elif key == "regions" and isinstance(value, dict):
            out[key] = {code: copy.deepcopy(w) for code, w in value.items() if w is not None}
        else:
            out[key] = copy.deepcopy(value)
    return out


def effective_settings(shop: Shop) -> dict[str, Any]:
    """The settings services obey: stored values over defaults, clipped by the plan."""
    merged = _deep_merge(DEFAULTS, shop.settings or {})
    # A zone stored before zones were checked (``localtime``) is passed over: the form showed it
    # and refused every save until retyped, and a page reading it would raise.
    merged["timezone"] = next(
        (name for name in (merged.get("timezone"), shop.timezone) if is_valid_zone(name)), "UTC"
    )
    if not has_capability(shop.plan, "custom_lifecycle_thresholds"):
        merged["lifecycle"] = copy.deepcopy(DEFAULTS["lifecycle"])
    if not has_capability(shop.plan, "regional_quiet_hours"):
        merged["quiet_hours"]["regions"] = {}
    return merged


def shop_timezone(shop: Shop) -> str:
    """The shop's time zone: the one its settings name, else its own (Shopify's), else UTC.

    The gate keeps a customer with no zone of their own in it, enrichment counts the shop's
    days in it, and every screen and answer about the shop shows its times in it.
    """
    return effective_settings(shop)["timezone"]


def parse_hhmm(value: Any, field: str) -> dt.time:
    """Parse "HH:MM" or raise ``ValidationFailed`` naming the field."""
    if not isinstance(value, str) or not HHMM.match(value):
        raise ValidationFailed(f"{field} must be a time like 21:00", field=field)
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def _validate_window(window: Any, field: str) -> None:
    if not isinstance(window, dict):
        raise ValidationFailed(f"{field} must be an object with start and end", field=field)
    start = parse_hhmm(window.get("start"), f"{field}.start")
    end = parse_hhmm(window.get("end"), f"{field}.end")
    if start == end:
        raise ValidationFailed(
            f"{field} starts and ends at the same time ({window['start']}): that is not a window", field=field
        )


# The largest value each kind of setting takes: beyond it a value is a typo, not a policy (a cap of
# 10**30 messages a day, a churn window of 10**20 days that enrichment then computes with).
MAX_DAYS = 3650  # lifecycle windows: ten years
MAX_CAP = 1000  # messages a day
MAX_IDENTITY_LIMIT = 1000  # identifiers per kind, people per identifier


def _positive_int(value: Any, field: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationFailed(f"{field} must be a whole number from {minimum} to {maximum:,}", field=field)
    return value


def validate(settings: dict[str, Any]) -> None:
    """Raise ``ValidationFailed`` for the first value that cannot be used."""
    tz = settings.get("timezone")
    if tz is not None:
        check_zone(tz)
    for section in ("lifecycle", "caps", "quiet_hours", "identity"):
        if not isinstance(settings.get(section), dict):
            raise ValidationFailed(f"{section} must be an object of settings", field=section)
    life = settings["lifecycle"]
    at_risk = _positive_int(life.get("at_risk_days"), "lifecycle.at_risk_days", 1, MAX_DAYS)
    churned = _positive_int(life.get("churned_days"), "lifecycle.churned_days", 1, MAX_DAYS)
    if at_risk >= churned:
        raise ValidationFailed(
            "lifecycle.at_risk_days must be shorter than lifecycle.churned_days",
            field="lifecycle.at_risk_days",
        )
    for key in CAP_KEYS:
        _positive_int(settings["caps"].get(key), f"caps.{key}", 0, MAX_CAP)
    threshold = settings.get("fatigue_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValidationFailed("fatigue_threshold must be a number in (0, 1]", field="fatigue_threshold")
    _validate_quiet_hours(settings["quiet_hours"])
    _validate_identity(settings["identity"])


def _validate_quiet_hours(quiet: dict) -> None:
    _validate_window(quiet, "quiet_hours")
    regions = quiet.get("regions", {})
    if not isinstance(regions, dict):
        raise ValidationFailed("quiet_hours.regions must map country codes to windows")
    for code, window in regions.items():
        if not (isinstance(code, str) and len(code) == 2 and code.isalpha() and code.isupper()):
            raise ValidationFailed(f"quiet_hours.regions key {code!r} is not a country code")
        if not country_zones(code):  # ZZ, or a code no time zone is in: its window would never apply
            raise ValidationFailed(f"quiet_hours.regions key {code!r} is no country's code")
        _validate_window(window, f"quiet_hours.regions.{code}")


def _validate_identity(identity: dict) -> None:
    blocked = identity.get("blocked_values")
    if not isinstance(blocked, list) or not all(isinstance(v, str) for v in blocked):
        raise ValidationFailed("identity.blocked_values must be a list of strings")
    # Every resolution batch reads the list: it is for junk values, not a second customer list.
    if len(blocked) > MAX_BLOCKED_VALUES or any(len(v) > 320 for v in blocked):
        raise ValidationFailed(
            f"identity.blocked_values holds at most {MAX_BLOCKED_VALUES:,} values of at most 320 characters",
            field="identity.blocked_values",
        )
    _positive_int(
        identity.get("max_identifiers_per_kind"), "identity.max_identifiers_per_kind", 1, MAX_IDENTITY_LIMIT
    )
    _positive_int(
        identity.get("max_people_per_identifier"), "identity.max_people_per_identifier", 2, MAX_IDENTITY_LIMIT
    )


def _unknown_keys(patch: dict, known: dict, prefix: str = "") -> list[str]:
    """Dotted names of the patch's keys that no setting has (``identity.max_identifers``): a
    mistyped name would otherwise be stored, answered 200 and obeyed by nothing."""
    out = []
    for key, value in patch.items():
        if key not in known:
            out.append(f"{prefix}{key}")
        elif isinstance(known[key], dict) and isinstance(value, dict) and key != "regions":
            out += _unknown_keys(value, known[key], f"{prefix}{key}.")
    return sorted(out)


def _changes(current: dict[str, Any], patch: dict[str, Any], key: str) -> bool:
    """Whether ``patch`` would change the effective section ``key`` (a section not an object does)."""
    if key not in patch:
        return False
    return not isinstance(patch[key], dict) or _deep_merge(current[key], patch[key]) != current[key]


def update_settings(shop: Shop, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into the shop's settings after validating the result.

    Raises:
        ValidationFailed: a bad value (the API answers 422 with the reason).
        Forbidden: a change the shop's plan does not include.
    """
    if not isinstance(patch, dict):
        raise ValidationFailed("settings must be a JSON object")
    unknown = _unknown_keys(patch, DEFAULTS)
    if unknown:
        raise ValidationFailed(f"unknown settings {sorted(unknown)}", field=sorted(unknown)[0])
    # A plan refuses a change, not a value it already holds: a client that GETs the settings,
    # edits the caps and PUTs the whole body back sends the windows it was given.
    current = effective_settings(shop)
    if _changes(current, patch, "lifecycle") and not has_capability(shop.plan, "custom_lifecycle_thresholds"):
        raise Forbidden("custom lifecycle windows need the Pro plan or above", code="plan_required")
    regions = (
        (patch.get("quiet_hours") or {}).get("regions")
        if isinstance(patch.get("quiet_hours"), dict)
        else None
    )
    if (
        regions
        and regions != current["quiet_hours"].get("regions")
        and not has_capability(shop.plan, "regional_quiet_hours")
    ):
        raise Forbidden("regional quiet hours need the Starter plan or above", code="plan_required")
    stored = _deep_merge(shop.settings or {}, patch)
    validate(_deep_merge(DEFAULTS, stored))
    shop.settings = stored
    return effective_settings(shop)
