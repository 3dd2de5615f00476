"""Importing a Klaviyo-style profile export (CSV) into profiles and consent history.

Imported consent is never ``explicit``: an imported "subscribed" cannot lift a
later opt-out (no silent re-subscribe), while an imported unsubscribe counts.
Each row resolves through the same identity rules as live signals.

An import in two passes (``two_pass``): every row is checked and the people of the
whole file are resolved at once, then names and consent are written 200 rows per
transaction (consent records together, as an ingest batch writes them). A person
several rows name gets the first non-blank name in file order (an import only fills
blanks). A refused batch is redone row by row (``import_row``).

The file is read by ``csv_source``: headers match whatever their case and spacing, a
row is numbered by the file line it starts on, and a stray quote is reported where it
breaks the file instead of swallowing the rows after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from app.models import Profile, Shop
from app.models.base import utcnow
from app.services.consent import record_consent
from app.services.consent_batch import ConsentBatch
from app.services.identifiers import Ident, normalise
from app.services.ingest.common import is_text, refresh_search_text, refresh_search_texts, set_names
from app.services.ingest.csv_source import Header, read_header, records
from app.services.ingest.two_pass import ImportResult, TwoPassImport
from app.services.resolution import Signal, resolve

CONSENT_COLUMNS = {"Email Marketing Consent": "email", "SMS Consent": "sms"}
CONSENT_ADDRESS = {"email": "email", "sms": "phone"}  # the identifier each channel's consent is given by
OPTED_IN_VALUES = {"subscribed", "true", "yes", "opted_in"}
OPTED_OUT_VALUES = {"unsubscribed", "false", "no", "opted_out"}
NEUTRAL_VALUES = {"", "never_subscribed", "never subscribed", "none"}
NOBODY = "no usable Email or Phone Number"
COLUMNS = ("Email", "Phone Number", "First Name", "Last Name", *CONSENT_COLUMNS)


def _consent_status(raw: str | None, column: str) -> str | None:
    value = (raw or "").strip().lower()
    if value in OPTED_IN_VALUES:
        return "opted_in"
    if value in OPTED_OUT_VALUES:
        return "opted_out"
    if value in NEUTRAL_VALUES:
        return None
    raise ValueError(f"{column} {raw!r} is not subscribed/unsubscribed/never_subscribed")


@dataclass
class ProfileRow:
    """A checked CSV row: its identifiers, consent statuses by channel and names."""

    found: list[Ident]
    statuses: dict[str, str | None]
    first_name: str | None
    last_name: str | None
    at: dt.datetime
    ref: str

    def signal(self) -> Signal:
        return Signal(tuple(self.found), "import", self.at, {"import": self.ref})


def check_row(shop: Shop, row: dict[str, str], at: dt.datetime, ref: str) -> ProfileRow:
    """Read one CSV row.

    Raises:
        ValueError: the row has no usable email or phone, an unknown consent value, or a cell
            that is not text (bytes that are not UTF-8, read as escapes, or a NUL).
    """
    for value in row.values():
        if isinstance(value, str) and not is_text(value):
            raise ValueError("the row holds bytes that are not UTF-8 text")
    found = [
        ident
        for kind, column in (("email", "Email"), ("phone", "Phone Number"))
        if (ident := normalise(kind, row.get(column), shop.country)) is not None and ident.kind != "raw_phone"
    ]
    if not found:
        raise ValueError(NOBODY)
    statuses = {
        channel: _consent_status(row.get(column), column) for column, channel in CONSENT_COLUMNS.items()
    }
    kinds = {ident.kind for ident in found}
    for channel, kind in CONSENT_ADDRESS.items():
        if statuses[channel] == "opted_in" and kind not in kinds:
            # An opt-in belongs to the address that gave it: without one (a phone we could not
            # read), it would stand for whatever number the customer gives us later.
            statuses[channel] = None
    return ProfileRow(found, statuses, row.get("First Name"), row.get("Last Name"), at, ref)


def import_row(shop: Shop, row: ProfileRow) -> None:
    """Resolve one checked row to a profile and append its consent, if any (the row-by-row path).

    Raises:
        ValueError: its identifiers are all junk (blocked), so it names nobody.
    """
    profile = resolve(shop, row.found, source="import", seen_at=row.at, evidence={"import": row.ref})
    if profile is None:
        raise ValueError(NOBODY)
    _fill(profile, row, record_consent)
    refresh_search_text(profile)


def _import_batch(shop: Shop, rows: list[tuple[ProfileRow, Profile | None]]) -> None:
    """Names, search texts and consent of a batch of resolved rows, the consent records together."""
    consents = ConsentBatch(shop.id)
    for row, profile in rows:
        _fill(profile, row, consents.add)
    refresh_search_texts(shop, {profile for _, profile in rows})
    consents.finish()


def _fill(profile: Profile, row: ProfileRow, record: Callable[..., object]) -> None:
    """Fill the profile's blank names and record the row's consent (``record_consent``'s arguments)."""
    set_names(profile, row.first_name, row.last_name, authoritative=False)
    for channel, status in row.statuses.items():
        if status is not None:
            kind = CONSENT_ADDRESS[channel]
            record(
                profile,
                channel,
                status,
                source="import",
                captured_at=row.at,
                explicit=False,
                identifier=next((i.value for i in row.found if i.kind == kind), None),
                external_ref=f"{row.ref}:{channel}",
            )


def import_profiles(
    shop: Shop, read_lines: Callable[[], Iterable[str]], *, progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Import every row: resolve the whole file's people at once, then write a batch per transaction.

    Args:
        read_lines: opens the CSV again for each pass (a file is read twice, not held).
        progress: told of each row as the second pass writes it.

    Returns:
        The rows imported, the rows skipped (by the file line each starts on) with why, and
        warnings about the header (a repeated column).

    Raises:
        ValueError: the CSV has neither an Email nor a Phone Number column.
    """
    header = check_header(read_lines)
    at = utcnow()
    stamp = f"import-{at:%Y%m%d%H%M%S}"

    def read():
        for number, row in _rows(read_lines, header):
            yield number, (number, row)

    def check(numbered) -> ProfileRow:
        number, row = numbered
        if isinstance(row, str):
            raise ValueError(row)  # the csv reader's reason this record cannot be read
        return check_row(shop, row, at, f"{stamp}-{number}")

    result = TwoPassImport(
        read=read,
        check=check,
        signal_of=ProfileRow.signal,
        load=check,
        apply_batch=partial(_import_batch, shop),
        apply_one=partial(import_row, shop),
        nobody=NOBODY,
    ).run(shop, progress)
    result.warnings.extend(header.warnings)
    return result


def count_rows(read_lines: Callable[[], Iterable[str]]) -> int:
    """The records after the header (what ``progress`` is told of in all)."""
    return max(0, sum(1 for _ in records(read_lines())) - 1)


def check_header(read_lines: Callable[[], Iterable[str]]) -> Header:
    """The file's header, mapped to the columns an import reads.

    Raises:
        ValueError: the file is empty, its header cannot be read, or it has neither an
            Email nor a Phone Number column (the message names the headers it has).
    """
    first = next(records(read_lines()), None)
    if first is None:
        raise ValueError("the CSV is empty: it needs a header with an Email or a Phone Number column")
    if first.cells is None:
        raise ValueError(f"the header on line {first.line} cannot be read: {first.error}")
    header = read_header(first.cells, COLUMNS)
    if not {"Email", "Phone Number"} & set(header.index):
        found = ", ".join(repr(name) for name in header.names[:20]) or "none"
        more = f" and {len(header.names) - 20} more" if len(header.names) > 20 else ""
        raise ValueError(f"the CSV needs an Email or a Phone Number column; its headers are {found}{more}")
    return header


def _rows(read_lines: Callable[[], Iterable[str]], header: Header) -> Iterator[tuple[int, dict | str]]:
    """Each record after the header by its line: the known columns' cells, or why it cannot be read.

    A cell that is not text, in a column we do not import too, refuses its row (``check_row``).
    """
    rows = records(read_lines())
    next(rows)
    imported = set(header.index.values())
    for record in rows:
        if record.cells is None:
            yield record.line, record.error
            continue
        cells = record.cells
        row = {name: cells[i] if i < len(cells) else None for name, i in header.index.items()}
        if any("\n" in (row.get(name) or "") for name in ("Email", "Phone Number")):
            # No address holds a line break: a stray quote joined lines until another closed it.
            span = f"lines {record.line}-{record.last}"
            yield record.line, f"a stray quote joins {span} into one row: they were not imported"
            continue
        row.update({f"#{i}": cell for i, cell in enumerate(cells) if i not in imported})
        yield record.line, row
