"""The customer's time zone(s), found by a documented fallback chain.

The chain, first hit wins:

1. ``profile.timezone`` (set explicitly on the profile);
2. the address: ``profile.country`` + ``profile.province`` (a province of a
   multi-zone country narrows it, e.g. AU/NSW → Australia/Sydney);
3. the phone number's country (``phonenumbers``);
4. the shop's time zone (settings ``timezone``, else ``shop.timezone``).

A step that ends in a country spanning several zones yields *all* of them:
the gate treats a moment as quiet when it is quiet in any of them, which
is the same as choosing the zone that keeps every zone of the country
inside the window (fail closed: never wake anyone). The country → zones
table is the IANA ``zone.tab`` shipped with ``tzdata``; ``zoneinfo`` has none.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from app.errors import ValidationFailed

# Provinces that name their zone(s) in the multi-zone countries shops sell to most.
PROVINCE_ZONES: dict[str, dict[str, tuple[str, ...]]] = {
    "AU": {
        "NSW": ("Australia/Sydney",),
        "ACT": ("Australia/Sydney",),
        "VIC": ("Australia/Melbourne",),
        "QLD": ("Australia/Brisbane",),
        "SA": ("Australia/Adelaide",),
        "TAS": ("Australia/Hobart",),
        "NT": ("Australia/Darwin",),
        "WA": ("Australia/Perth",),
    },
    "CA": {
        "ON": ("America/Toronto",),
        "QC": ("America/Toronto",),
        "NS": ("America/Halifax",),
        "NB": ("America/Moncton",),
        "PE": ("America/Halifax",),
        "NL": ("America/St_Johns",),
        "MB": ("America/Winnipeg",),
        "SK": ("America/Regina",),
        "AB": ("America/Edmonton",),
        "BC": ("America/Vancouver",),
        "YT": ("America/Whitehorse",),
        "NT": ("America/Yellowknife",),
    },
    "US": {
        **dict.fromkeys(
            (
                "CT",
                "DE",
                "DC",
                "GA",
                "ME",
                "MD",
                "MA",
                "NH",
                "NJ",
                "NY",
                "NC",
                "OH",
                "PA",
                "RI",
                "SC",
                "VT",
                "VA",
                "WV",
            ),
            ("America/New_York",),
        ),
        **dict.fromkeys(("AL", "AR", "IL", "IA", "LA", "MN", "MS", "MO", "OK", "WI"), ("America/Chicago",)),
        **dict.fromkeys(("CO", "MT", "NM", "UT", "WY"), ("America/Denver",)),
        "AZ": ("America/Phoenix",),
        "CA": ("America/Los_Angeles",),
        "WA": ("America/Los_Angeles",),
        "NV": ("America/Los_Angeles",),
        "HI": ("Pacific/Honolulu",),
        # States split between two zones keep both (fail closed).
        "FL": ("America/New_York", "America/Chicago"),
        "IN": ("America/Indiana/Indianapolis", "America/Chicago"),
        "KY": ("America/New_York", "America/Chicago"),
        "MI": ("America/Detroit", "America/Chicago"),
        "TN": ("America/New_York", "America/Chicago"),
        "TX": ("America/Chicago", "America/Denver"),
        "KS": ("America/Chicago", "America/Denver"),
        "NE": ("America/Chicago", "America/Denver"),
        "ND": ("America/Chicago", "America/Denver"),
        "SD": ("America/Chicago", "America/Denver"),
        "ID": ("America/Boise", "America/Los_Angeles"),
        "OR": ("America/Los_Angeles", "America/Boise"),
        "AK": ("America/Anchorage", "America/Adak"),
    },
}


@dataclass(frozen=True)
class CustomerZone:
    """Where the chain ended: the zone(s) to obey, the country, and which step decided."""

    zones: tuple[str, ...]
    country: str | None
    source: str  # profile | address | phone | shop

    @functools.cached_property
    def primary(self) -> zoneinfo.ZoneInfo:
        """The zone that defines the customer's calendar day (the first listed)."""
        return zone(self.zones[0])

    @functools.cached_property
    def infos(self) -> tuple[zoneinfo.ZoneInfo, ...]:
        """Every zone as a ``ZoneInfo``."""
        return tuple(zone(z) for z in self.zones)


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """A cached ``ZoneInfo``."""
    return zoneinfo.ZoneInfo(name)


# Files of the zone database that are no zone: the server's own zone (a link to /etc/localtime),
# the "time zone not set" zone of an unconfigured machine, and zic's default rules.
NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
SHOWN_NAME_CHARS = 64


@functools.lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    """The IANA zone names this system can load (``zoneinfo.available_timezones``, read once)."""
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def is_valid_zone(name: object) -> bool:
    """True when ``name`` is an IANA zone this system knows.

    A lookup in the list, not ``ZoneInfo(name)``: loading any text as a file name accepted
    ``localtime`` and ``Factory``, and a name too long for the file system raised ``OSError``.
    """
    return isinstance(name, str) and name in known_zones()


def check_zone(name: object, field: str = "timezone") -> str:
    """Return ``name`` when it is an IANA zone; else raise ``ValidationFailed`` naming ``field``."""
    if is_valid_zone(name):
        return name
    # A name is shown back to whoever typed it, but a page of it is no help.
    long = isinstance(name, str) and len(name) > SHOWN_NAME_CHARS
    shown = repr(name[:SHOWN_NAME_CHARS] + "…" if long else name)
    raise ValidationFailed(f"unknown time zone {shown}; use a name like Europe/London", field=field)


def zone_or_utc(*names: str | None) -> zoneinfo.ZoneInfo:
    """The first of ``names`` that is a zone (a stored value may predate ``check_zone``), else UTC."""
    return zone(next((name for name in names if is_valid_zone(name)), "UTC"))


def _zone_tab_text() -> str:
    try:
        return (importlib.resources.files("tzdata.zoneinfo") / "zone.tab").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return Path("/usr/share/zoneinfo/zone.tab").read_text()


@functools.lru_cache(maxsize=1)
def _zone_table() -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    by_country: dict[str, list[str]] = {}
    country_of: dict[str, str] = {}
    for line in _zone_tab_text().splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3 or not is_valid_zone(parts[2]):
            continue
        by_country.setdefault(parts[0], []).append(parts[2])
        country_of[parts[2]] = parts[0]
    return {c: tuple(zs) for c, zs in by_country.items()}, country_of


# Phone regions (and address codes) with no line in zone.tab: Kosovo keeps Belgrade's time,
# Ascension and Tristan da Cunha St Helena's. Without them a Kosovan customer had the shop's
# quiet hours.
UNLISTED_COUNTRY_ZONES = {
    "XK": ("Europe/Belgrade",),
    "AC": ("Atlantic/St_Helena",),
    "TA": ("Atlantic/St_Helena",),
}


def country_zones(country: str | None) -> tuple[str, ...]:
    """Every IANA zone of an ISO country code (empty when unknown)."""
    if not country:
        return ()
    code = country.upper()
    return _zone_table()[0].get(code) or UNLISTED_COUNTRY_ZONES.get(code, ())


def zone_countries() -> frozenset[str]:
    """The ISO country codes with a zone (zone.tab's, and those it leaves out)."""
    return frozenset(_zone_table()[0]) | frozenset(UNLISTED_COUNTRY_ZONES)


def country_of_zone(name: str) -> str | None:
    """The ISO country a zone belongs to, when ``zone.tab`` says."""
    return _zone_table()[1].get(name)


def address_zones(country: str | None, province: str | None) -> tuple[str, ...]:
    """The zones of an address: the province's where we know it, else the country's."""
    if not country:
        return ()
    country = country.upper()
    by_province = PROVINCE_ZONES.get(country, {})
    if province and province.upper() in by_province:
        return by_province[province.upper()]
    return country_zones(country)


@functools.lru_cache(maxsize=4096)
def phone_country(e164: str) -> str | None:
    """The ISO country of an E.164 number, or None when it cannot be parsed.

    A number the library's data does not know as valid (a range newer than its data, a
    reserved test range) still names its country by its calling code (+44: GB), as it names
    the country's quiet hours better than the shop's zone would.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    if region is None:
        region = phonenumbers.region_code_for_country_code(number.country_code)
    return None if region in (None, phonenumbers.UNKNOWN_REGION) else region


def resolve_zone(
    *,
    profile_timezone: str | None,
    country: str | None,
    province: str | None,
    phones: tuple[str, ...] | list[str] = (),
    shop_timezone: str | None,
    shop_country: str | None,
) -> CustomerZone:
    """Walk the fallback chain (see the module docstring) and return where it ends."""
    return _resolve(profile_timezone, country, province, tuple(phones), shop_timezone, shop_country)


def _shop_zone_first(zones: tuple[str, ...], shop_timezone: str | None) -> tuple[str, ...]:
    """A country's zones with the shop's own first where it is one of them: the first zone is the
    customer's calendar day (daily caps), and a Sydney shop's customer known only by an Australian
    mobile lives by Sydney's midnight far likelier than by Lord Howe Island's, first in the table."""
    if shop_timezone in zones and zones[0] != shop_timezone:
        return (shop_timezone, *(z for z in zones if z != shop_timezone))
    return zones


@functools.lru_cache(maxsize=8192)
def _resolve(
    profile_timezone: str | None,
    country: str | None,
    province: str | None,
    phones: tuple[str, ...],
    shop_timezone: str | None,
    shop_country: str | None,
) -> CustomerZone:
    if is_valid_zone(profile_timezone):
        return CustomerZone((profile_timezone,), country_of_zone(profile_timezone) or country, "profile")
    zones = address_zones(country, province)
    if zones:
        return CustomerZone(_shop_zone_first(zones, shop_timezone), country.upper(), "address")
    for phone in phones:
        code = phone_country(phone)
        zones = country_zones(code)
        if zones:
            return CustomerZone(_shop_zone_first(zones, shop_timezone), code, "phone")
    tz = shop_timezone if is_valid_zone(shop_timezone) else "UTC"
    return CustomerZone((tz,), shop_country or country_of_zone(tz), "shop")


def local_time(value, zone: dt.tzinfo, fmt: str = "%d %b %Y %H:%M") -> str:
    """Show a moment (datetime or ISO string) in ``zone``, with the zone's abbreviation when the
    format shows a time of day (a date alone reads "28 Oct 2026", not "28 Oct 2026 GMT").

    The consoles' ``local`` filter, and the text of answers that name a moment to a person.
    """
    if not value:
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    moment = value.astimezone(zone)
    shown = moment.strftime(fmt)
    return f"{shown} {moment.tzname()}" if "%H" in fmt or "%I" in fmt else shown
