"""Turning the settings form into a settings patch."""

from __future__ import annotations

from app.errors import ValidationFailed
from app.services.shop_settings import CAP_KEYS


def _int(form, name: str) -> int:
    raw = (form.get(name) or "").strip()
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(f"{name.replace('_', ' ')} must be a whole number", field=name) from None


def patch_from_form(form, *, lifecycle: bool, regions: bool) -> dict:
    """Build the patch ``update_settings`` takes from the submitted form fields."""
    try:
        threshold = float(form.get("fatigue_threshold", ""))
    except ValueError:
        raise ValidationFailed("fatigue threshold must be a number", field="fatigue_threshold") from None
    patch: dict = {
        "timezone": form.get("timezone") or None,
        "caps": {key: _int(form, f"cap_{key}") for key in CAP_KEYS},
        "fatigue_threshold": threshold,
        "quiet_hours": {"start": form.get("quiet_start", ""), "end": form.get("quiet_end", "")},
        "identity": {
            "blocked_values": [
                v.strip().lower() for v in (form.get("blocked_values") or "").splitlines() if v.strip()
            ],
            "max_identifiers_per_kind": _int(form, "max_identifiers_per_kind"),
            "max_people_per_identifier": _int(form, "max_people_per_identifier"),
        },
    }
    if lifecycle:
        patch["lifecycle"] = {
            "at_risk_days": _int(form, "at_risk_days"),
            "churned_days": _int(form, "churned_days"),
        }
    if regions:
        parsed = {}
        for line in (form.get("regions") or "").splitlines():
            if not line.strip():
                continue
            try:
                code, window = line.split(None, 1)
                start, end = (part.strip() for part in window.split("-"))
            except ValueError:
                raise ValidationFailed(
                    f"region line {line.strip()!r} should look like 'AU 20:00-08:00'", field="regions"
                ) from None
            parsed[code.upper()] = {"start": start, "end": end}
        patch["quiet_hours"]["regions"] = parsed
    return patch
