"""A profile's own time zone, set by hand when the address and phone guess wrong."""

from __future__ import annotations

import zoneinfo

from app.errors import ValidationFailed
from app.models import Profile


def set_profile_timezone(profile: Profile, timezone: str | None) -> None:
    """Set (or with an empty value, clear) the zone quiet hours and local days use first.

    Raises:
        ValidationFailed: the name is not an IANA time zone.
    """
    name = (timezone or "").strip()
    if not name:
        profile.timezone, profile.timezone_source = None, None
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"unknown time zone {name!r}; use a name like Europe/London", field="timezone"
        ) from None
    profile.timezone, profile.timezone_source = name, "manual"
