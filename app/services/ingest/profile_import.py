"""Importing a Klaviyo-style profile export (CSV) into profiles and consent history.

Imported consent is never ``explicit``: an imported "subscribed" cannot lift a
later opt-out (no silent re-subscribe), while an imported unsubscribe counts.
Each row resolves through the same identity rules as live signals.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.extensions import db
from app.models import Shop
from app.models.base import utcnow
from app.services.consent import record_consent
from app.services.identifiers import normalise
from app.services.ingest.common import refresh_search_text, set_names
from app.services.resolution import resolve

CONSENT_COLUMNS = {"Email Marketing Consent": "email", "SMS Consent": "sms"}
OPTED_IN_VALUES = {"subscribed", "true", "yes", "opted_in"}
OPTED_OUT_VALUES = {"unsubscribed", "false", "no", "opted_out"}
NEUTRAL_VALUES = {"", "never_subscribed", "never subscribed", "none"}


@dataclass
class ImportResult:
    """What happened: rows imported, and the rows skipped with their reason."""

    imported: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)


def _consent_status(raw: str | None, column: str) -> str | None:
    value = (raw or "").strip().lower()
    if value in OPTED_IN_VALUES:
        return "opted_in"
    if value in OPTED_OUT_VALUES:
        return "opted_out"
    if value in NEUTRAL_VALUES:
        return None
    raise ValueError(f"{column} {raw!r} is not subscribed/unsubscribed/never_subscribed")


def import_row(shop: Shop, row: dict[str, str], at: dt.datetime, ref: str) -> None:
    """Resolve one CSV row to a profile and append its consent, if any.

    Raises:
        ValueError: the row has no usable email or phone, or an unknown consent value.
    """
    found = [
        ident
        for kind, column in (("email", "Email"), ("phone", "Phone Number"))
        if (ident := normalise(kind, row.get(column), shop.country)) is not None and ident.kind != "raw_phone"
    ]
    if not found:
        raise ValueError("no usable Email or Phone Number")
    statuses = {
        channel: _consent_status(row.get(column), column) for column, channel in CONSENT_COLUMNS.items()
    }
    profile = resolve(shop, found, source="import", seen_at=at, evidence={"import": ref})
    set_names(profile, row.get("First Name"), row.get("Last Name"), authoritative=False)
    refresh_search_text(profile)
    for channel, status in statuses.items():
        if status is not None:
            identifier = next(
                (i.value for i in found if i.kind == ("email" if channel == "email" else "phone")), None
            )
            record_consent(
                profile,
                channel,
                status,
                source="import",
                captured_at=at,
                explicit=False,
                identifier=identifier,
                external_ref=f"{ref}:{channel}",
            )


def import_profiles(
    shop: Shop, lines: Iterable[str], *, progress: Callable[[int], None] = lambda n: None
) -> ImportResult:
    """Import every row, committing each; a bad row is reported and skipped, never the file."""
    result = ImportResult()
    at = utcnow()
    reader = csv.DictReader(lines)
    missing = {"Email", "Phone Number"} - set(reader.fieldnames or [])
    if missing == {"Email", "Phone Number"}:
        raise ValueError("the CSV needs an Email or a Phone Number column")
    for number, row in enumerate(reader, start=2):
        try:
            with db.session.begin_nested():
                import_row(shop, row, at, f"import-{at:%Y%m%d%H%M%S}-{number}")
            result.imported += 1
        except ValueError as exc:
            result.failed.append((number, str(exc)))
        progress(1)
    db.session.commit()
    return result
