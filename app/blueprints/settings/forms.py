"""Turning the settings form into a settings patch."""

from __future__ import annotations

from app.errors import ValidationFailed
from app.services.shop_settings import CAP_KEYS

# The settings as the form names them: the reasons ``update_settings`` gives name the API's keys.
LABELS = {
    "caps.global_daily": "Daily cap for all channels",
    "caps.email": "Email cap",
    "caps.sms": "SMS cap",
    "caps.whatsapp": "WhatsApp cap",
    "caps.push": "Push cap",
    "fatigue_threshold": "Fatigue threshold",
    "quiet_hours.start": "Quiet hours from",
    "quiet_hours.end": "Quiet hours until",
    "quiet_hours.regions": "Per-country quiet hours",
    "lifecycle.at_risk_days": "At risk after",
    "lifecycle.churned_days": "Churned after",
    "identity.max_identifiers_per_kind": "Identifiers of one kind",
    "identity.max_people_per_identifier": "People sharing an identifier",
    "identity.blocked_values": "Values that never link people",
}
# The form's own field names, for the reasons it gives itself.
FIELDS = {
    **{f"cap_{key}": f"caps.{key}" for key in CAP_KEYS},
    "quiet_start": "quiet_hours.start",
    "quiet_end": "quiet_hours.end",
    "at_risk_days": "lifecycle.at_risk_days",
    "churned_days": "lifecycle.churned_days",
    "max_identifiers_per_kind": "identity.max_identifiers_per_kind",
    "max_people_per_identifier": "identity.max_people_per_identifier",
}


def worded(message: str) -> str:
    """A settings reason with each key it names replaced by the form's label for it."""
    for key in sorted(LABELS, key=len, reverse=True):
        message = message.replace(key, LABELS[key])
    return message


def _int(form, name: str) -> int:
    raw = (form.get(name) or "").strip()
    try:
        return int(raw)
    except ValueError:
        label = LABELS.get(FIELDS.get(name, name), name.replace("_", " "))
        raise ValidationFailed(f"{label} must be a whole number", field=name) from None


def patch_from_form(form, *, lifecycle: bool, regions: bool) -> dict:
    """Build the patch ``update_settings`` takes from the submitted form fields."""
    try:
        threshold = float(form.get("fatigue_threshold", ""))
    except ValueError:
        raise ValidationFailed("Fatigue threshold must be a number", field="fatigue_threshold") from None
    patch: dict = {
        "timezone": (form.get("timezone") or "").strip() or None,
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
            if code.upper() in parsed:  # the last line silently won
                raise ValidationFailed(
                    f"{code.upper()} has two lines of quiet hours: keep the one you mean", field="regions"
                )
            parsed[code.upper()] = {"start": start, "end": end}
        patch["quiet_hours"]["regions"] = parsed
    return patch
