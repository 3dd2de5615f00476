"""A profile's own time zone, set by hand when the address and phone guess wrong."""

from __future__ import annotations

from app.models import Profile
from app.services.profile_lock import lock_live
from app.services.timezones import check_zone


def set_profile_timezone(profile: Profile, timezone: str | None) -> Profile:
    """Set (or with an empty value, clear) the zone quiet hours and local days use first.

    The profile is locked like the gate's reservation locks it, so a send in flight
    finishes first and every later one sees the new zone; a merge that committed while
    we waited moved the profile, and the zone is set on its survivor (returned).

    Raises:
        ValidationFailed: the name is not an IANA time zone.
    """
    name = (timezone or "").strip()
    if name:
        check_zone(name)
    profile = lock_live(profile.shop_id, profile.id) or profile
    profile.timezone, profile.timezone_source = (name, "manual") if name else (None, None)
    return profile
