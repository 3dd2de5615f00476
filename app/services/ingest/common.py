"""Helpers every ingest handler shares: times, identifiers, events and profile touches."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from app.analytics.engagement import is_persons_doing
from app.digits import whole_number
from app.errors import DomainError
from app.extensions import db
from app.models import Event, Identifier, Profile, Shop, WebhookDelivery
from app.models.base import EARLIEST_TIME, utcnow
from app.search_fold import fold
from app.services.bulk_sql import insert_new, is_postgresql
from app.services.identifiers import Ident, normalise
from app.tenancy import scoped

# Money columns are NUMERIC(14, 2): an amount must stay below 10^12 to be stored.
MAX_AMOUNT = Decimal(10) ** 12


@dataclass
class Planned:
    """One delivery, parsed: the signal to resolve and what to store on the profile it resolves to.

    ``plan_*`` functions build it without touching the database, so a batch can parse every
    row first, resolve all their signals in one call, and write the events in bulk.
    """

    signal: Any = None  # resolution.Signal, or None when nothing is to be resolved
    # ``record_event`` keyword arguments (profile and shop aside), or None for no event.
    event: dict[str, Any] | None = None
    metric: tuple[str, str] | None = None  # (channel, metric) counted once when the event is new
    contact: bool = False  # an email or phone was seen: the profile's search text is refreshed
    message_refs: tuple = ()  # our message ids: their recipient is the profile, without resolving
    # Row-specific work on the resolved profile, in delivery order: ``after(profile, orders, consents)``,
    # the batch's shared state for orders and its consent records (None on the row-by-row path).
    after: Callable[[Any, Any, Any], None] | None = None
    order_ref: str | None = None  # a Shopify order id: the batch reads its stored version up front
    profile: Any = field(default=None, repr=False)  # filled in once resolved


class BadPayload(DomainError):
    """A body that is not the provider's format (answered 400 with the reason)."""

    status = 400
    code = "bad_payload"


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
WHOLE_TEXT = re.compile(r"^\s*-?[0-9]{1,12}\s*$")


def load_json(raw: bytes | str, what: str = "the body") -> Any:
    """A JSON document as the standard defines it, or ``BadPayload`` saying why not.

    Python's parser also takes ``NaN``, ``Infinity`` (and ``1e999`` as infinity), ``\\u0000``,
    and ``\\ud800`` escapes that pair with nothing: none of them can be stored (PostgreSQL's
    JSON and text refuse them), so a body holding one is refused here rather than failing at
    every attempt to apply it.
    """
    # Text read with ``surrogateescape`` gets its undecodable bytes back, to be refused below.
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    try:
        doc = json.loads(data, parse_constant=_no_constant, parse_float=_finite)
        # Only a body with such an escape can hold such a string (escaped surrogates are fine in pairs).
        text_only = not (b"\\u0000" in data or _SURROGATE_ESCAPE.search(data)) or _all_text(doc)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"{what} is not valid JSON ({type(exc).__name__})") from None
    except RecursionError:  # [[[[… a thousand deep: no provider nests so, and Python's parser gives up
        raise BadPayload(f"{what} is nested too deeply to be a provider's JSON") from None
    if not text_only:
        raise BadPayload(
            f"{what} holds a NUL character (\\u0000) or a lone surrogate escape, which is not text"
        )
    return doc


def is_text(value: str) -> bool:
    """False for a string no database text holds: a NUL, or a lone surrogate (an undecoded byte)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _all_text(doc: Any) -> bool:
    """True when every key and string anywhere in the document ``is_text``."""
    if isinstance(doc, str):
        return is_text(doc)
    if isinstance(doc, dict):
        return all(is_text(k) and _all_text(v) for k, v in doc.items())
    if isinstance(doc, list):
        return all(_all_text(v) for v in doc)
    return True


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text[:20]} is past the largest number JSON can carry here")
    return value


@dataclass
class CheckedBatch:
    """A provider's batch after each event's check: the events to store, and why the others were refused.

    One malformed event does not cost the batch's valid ones (a browser pixel never sends them
    again), nor is it lost itself: the endpoint stores it in the dead-letter queue
    (``refused.dead_letters``) and answers 200 with the reasons. Only a batch with no valid
    event at all is refused whole (``refusal``).
    """

    events: list
    refused: list[str]  # the reasons, each naming the event's place (``events[2]: …``)
    rejected: list = field(default_factory=list)  # the refused events themselves, in that order

    def refusal(self) -> BadPayload:
        """The 400 of a batch none of whose events is usable: the first reason, and how many more."""
        more = f" (and {len(self.refused) - 1} more refused)" if len(self.refused) > 1 else ""
        return BadPayload(f"{self.refused[0]}{more}")


def check_each(
    events: list, check: Callable[[Any, str], None], *, batch: bool, name: str = "events"
) -> CheckedBatch:
    """Run ``check(event, where)`` on every event; ``where`` names its place (``events[2]``)."""
    out = CheckedBatch([], [])
    for index, event in enumerate(events):
        try:
            check(event, f"{name}[{index}]" if batch else "event")
        except BadPayload as exc:
            out.refused.append(exc.message)
            out.rejected.append(event)
        else:
            out.events.append(event)
    return out


def parse_time(value: Any, field: str = "timestamp") -> dt.datetime:
    """An aware UTC datetime from ISO 8601 text or epoch seconds, from 1970 on.

    A time before 1970 is a broken clock or a placeholder (0001-01-01), and would age
    its profile by centuries: every decay, window and prediction works from it.

    Raises:
        BadPayload: the value is neither, or before 1970.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _not_before_1970(_from_epoch(value, field), field)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        seconds = whole_number(text)
        if seconds is not None:
            return _not_before_1970(_from_epoch(seconds, field), field)
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadPayload(f"{field} is not an ISO 8601 time: {text[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        try:
            return _not_before_1970(parsed.astimezone(dt.UTC), field)
        except OverflowError:  # 0001-01-01 with a positive offset, or 9999-12-31 with a negative one
            edge = "before 1970" if parsed.year < 1970 else "past the calendar's end"
            raise BadPayload(f"{field} is {edge}: {text[:40]!r}") from None
    raise BadPayload(f"{field} is required (ISO 8601 or epoch seconds)")


def _not_before_1970(moment: dt.datetime, field: str) -> dt.datetime:
    if moment < EARLIEST_TIME:
        raise BadPayload(f"{field} is before 1970: {moment.isoformat()}")
    return moment


def _from_epoch(seconds: float, field: str) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(float(seconds), dt.UTC)
    except (ValueError, OverflowError, OSError):  # NaN, infinity, or past the year 9999
        raise BadPayload(f"{field} is not a time: {str(seconds)[:40]!r}") from None


CLOCK_SKEW = dt.timedelta(minutes=10)  # how far a sender's clock may run ahead of ours


def not_after(at: dt.datetime, delivery: WebhookDelivery | None) -> dt.datetime:
    """``at``, or when the delivery arrived if ``at`` is later than that by more than a clock's drift.

    An event cannot have happened after it reached us. A browser whose clock is set a
    year ahead would otherwise make its visitor "last seen" next year, and engaged (never
    at risk) until then.
    """
    received_at = delivery.received_at if delivery is not None else None
    return received_at if received_at is not None and at > received_at + CLOCK_SKEW else at


# A browser's or phone's clock this far behind is broken, not an event replayed late (a store's
# history is imported through Shopify, never through the pixel or a provider's webhook).
STALE_CLOCK = dt.timedelta(days=5 * 365)


def device_time(at: dt.datetime, delivery: WebhookDelivery | None) -> dt.datetime:
    """When a device says an event happened, kept within its clock's possible error: ``not_after``,
    and when the delivery arrived if ``at`` is years before that (a page view stamped 1999 made its
    visitor a customer since 1999, churned while browsing)."""
    at = not_after(at, delivery)
    received_at = delivery.received_at if delivery is not None else None
    return received_at if received_at is not None and at < received_at - STALE_CLOCK else at


def optional_time(value: Any, field: str = "timestamp") -> dt.datetime | None:
    """Like ``parse_time`` but None for a missing or empty value."""
    if value in (None, ""):
        return None
    return parse_time(value, field)


def money(value: Any) -> Decimal | None:
    """A Decimal from Shopify's string amounts, or None."""
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise BadPayload(f"not an amount: {str(value)[:20]!r}")
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise BadPayload(f"not an amount: {str(value)[:20]!r}") from None
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        raise BadPayload(f"not an amount: {str(value)[:20]!r}")
    return amount


def idents(shop: Shop, pairs: Iterable[tuple[str, Any]]) -> list[Ident]:
    """Normalise ``(kind, raw)`` pairs with the shop's country, dropping empty ones.

    Raises:
        BadPayload: a value that is neither text nor a whole number (an email sent as an object).
    """
    out: list[Ident] = []
    for kind, raw in pairs:
        if raw in (None, ""):
            continue
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise BadPayload(f"{kind} must be text, not {type(raw).__name__}")
        ident = normalise(kind, raw, shop.country)
        if ident is not None and ident not in out:
            out.append(ident)
    return out


def ident_doc(found: Iterable[Ident]) -> dict[str, list[str]]:
    """``{"email": [...], "phone": [...]}`` for the Event's identifiers column."""
    doc: dict[str, list[str]] = {}
    for ident in found:
        doc.setdefault(ident.kind, []).append(ident.value)
    return doc


def record_event(
    shop: Shop,
    profile: Profile | None,
    *,
    type: str,
    source: str,
    external_id: str,
    occurred_at: dt.datetime,
    channel: str | None = None,
    found: Iterable[Ident] = (),
    properties: dict[str, Any] | None = None,
    delivery_id: int | None = None,
) -> int | None:
    """Store one signal once; its new id, or None when it was already stored (skip counters then).

    One ``INSERT … ON CONFLICT DO NOTHING`` on ``(shop_id, source, external_id)``:
    a replay, or two workers racing on the same signal, adds nothing and raises nothing.
    """
    values = {
        "shop_id": shop.id,
        "profile_id": profile.id if profile is not None else None,
        "type": type,
        "channel": channel,
        "source": source,
        "external_id": external_id[:255],
        "identifiers": ident_doc(found),
        "properties": properties or {},
        "occurred_at": occurred_at,
        "received_at": utcnow(),
        "delivery_id": delivery_id,
    }
    insert = dialect_insert()(Event).values(**values)
    insert = insert.on_conflict_do_nothing(index_elements=["shop_id", "source", "external_id"])
    event_id = db.session.scalar(insert.returning(Event.id))
    if event_id is None:
        return None
    if profile is not None and is_persons_doing(type) and _later(profile.last_seen_at, occurred_at):
        profile.last_seen_at = occurred_at
    return event_id


def _later(seen: dt.datetime | None, at: dt.datetime) -> bool:
    return seen is None or seen < at


def dialect_insert():
    """The INSERT construct with ``on_conflict_do_nothing`` for the database in use."""
    if is_postgresql():
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def set_names(profile: Profile, first: Any, last: Any, *, authoritative: bool) -> None:
    """Take names from a customer record (``authoritative``) or fill blanks from anything else."""
    for attr, value in (("first_name", first), ("last_name", last)):
        value = str(value).strip()[:255] if value else None
        if value and (authoritative or not getattr(profile, attr)):
            setattr(profile, attr, value)


CURRENCY = re.compile(r"^[A-Za-z]{3}$")  # an ISO 4217 code


def not_negative(amount: Decimal | None, field: str) -> Decimal | None:
    """``amount`` when it is not below zero: a negative total, price or refund would count a
    purchase as money given back (or a refund as money spent).

    Raises:
        BadPayload: naming the field.
    """
    if amount is not None and amount < 0:
        raise BadPayload(f"{field} must not be negative: {amount}")
    return amount


def currency_code(value: Any, field: str) -> str | None:
    """An ISO 4217 code as Shopify writes it (``GBP``), upper-cased; None when absent.

    Raises:
        BadPayload: anything else (``POUNDS`` was stored cut to ``POU``).
    """
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not CURRENCY.match(value.strip()):
        raise BadPayload(f"{field} must be a three-letter code like GBP: {str(value)[:20]!r}")
    return value.strip().upper()


def update_details(
    profile: Profile,
    version_at: dt.datetime | None,
    names: tuple[Any, Any],
    address: dict | None,
    currency: Any,
    authoritative: bool,
) -> None:
    """Names, location and currency a Shopify customer or order version tells of its person.

    Only a version at least as new as the one that last set them overwrites them
    (``newer_details``); an older one, delivered late, fills blanks.
    """
    newer = newer_details(profile, version_at)
    set_names(profile, *names, authoritative=authoritative and newer)
    if newer or profile.country is None:
        set_location(profile, address)
    if currency and (newer or profile.currency is None):
        profile.currency = currency


def newer_details(profile: Profile, at: dt.datetime | None) -> bool:
    """Whether a Shopify customer or order version of time ``at`` may overwrite the profile's names,
    location and currency (and note ``at``): not when a newer version was applied already.

    Shopify delivers versions out of order; without this an ``orders/create`` arriving after its
    ``orders/updated`` put back the name and address the customer had since changed. A version
    without a time may only fill what is blank.
    """
    if at is None or (profile.details_at is not None and at < profile.details_at):
        return False
    profile.details_at = at
    return True


def set_location(profile: Profile, address: dict | None) -> None:
    """Country and province (codes) from a Shopify address."""
    if not isinstance(address, dict):
        return
    country = address.get("country_code")
    if isinstance(country, str) and len(country) == 2:
        profile.country = country.upper()
        province = address.get("province_code")
        profile.province = str(province)[:16] if province else None


def refresh_search_text(profile: Profile) -> None:
    """Rebuild the case-folded "first last emails phones" the console searches."""
    values = db.session.scalars(
        scoped(Identifier, profile.shop_id, Identifier.value)
        .where(Identifier.profile_id == profile.id, Identifier.kind.in_(("email", "phone")))
        .order_by(Identifier.kind, Identifier.value)
    )
    profile.search_text = search_text_of([profile.first_name or "", profile.last_name or "", *values])


def search_text_of(parts: Iterable[str]) -> str | None:
    """The words the console searches, folded (``search_fold``): "Zoë Groß" is stored as "zoe gross",
    so typing ZOE, Zoë or GROSS finds her (``profile_search`` folds the query alike)."""
    return fold(" ".join(p for p in parts if p)) or None


def first(*values: Any) -> Any:
    """The first value that is not None or empty."""
    return next((v for v in values if v not in (None, "")), None)


def as_dict(value: Any) -> dict:
    """``value`` when it is a dict, else an empty one (payloads carry nulls)."""
    return value if isinstance(value, dict) else {}


def text(value: Any, field: str, limit: int | None = None) -> str | None:
    """A text field of a payload (cut to ``limit`` if given): None when null or empty, numbers as written.

    Raises:
        BadPayload: a list or an object where the provider sends text.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dict | list):
        raise BadPayload(f"{field} must be text, not {type(value).__name__}")
    return str(value)[:limit] or None


def whole(value: Any, field: str) -> int:
    """A count from a payload (0 when null or empty): an integer, or text or a float holding one.

    Raises:
        BadPayload: anything else, or a count no 32-bit column holds.
    """
    if value is None or value == "":
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and WHOLE_TEXT.match(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**31:
        raise BadPayload(f"{field} must be a whole number: {str(value)[:20]!r}")
    return value


def as_object(value: Any, field: str) -> dict:
    """``value`` when it is an object, an empty one for null or a missing key.

    Raises:
        BadPayload: anything else (a list or a flag where the provider sends an object).
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadPayload(f"{field} must be an object, not {type(value).__name__}")
    return value


def as_list(value: Any, field: str) -> list:
    """``value`` when it is a list, an empty one for null or a missing key.

    Raises:
        BadPayload: anything else (a number where the provider sends a list).
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadPayload(f"{field} must be a list, not {type(value).__name__}")
    return value


def engage(
    shop: Shop,
    profile: Profile | None,
    *,
    channel: str,
    metric: str,
    source: str,
    external_id: str,
    occurred_at: dt.datetime,
    found: Iterable[Ident] = (),
    properties: dict[str, Any] | None = None,
    delivery_id: int | None = None,
) -> bool:
    """Store a ``<channel>.<metric>`` event and count it once; False for a replay."""
    from app.services.engagement import apply_engagement

    event = record_event(
        shop,
        profile,
        type=f"{channel}.{metric}",
        channel=channel,
        source=source,
        external_id=external_id,
        occurred_at=occurred_at,
        found=found,
        properties=properties,
        delivery_id=delivery_id,
    )
    if event is None:
        return False
    if profile is not None:
        apply_engagement(profile, channel, metric, occurred_at)
    return True


MESSAGE_ID = re.compile(r"(?:.*-)?([0-9]{1,18})")


def message_keys(ref: Any) -> tuple[str | None, int | None]:
    """A message reference as the provider's message id and our message id (``m-1001`` → 1001).

    A reference is ours when a provider echoes it back (a custom argument, a status callback),
    so it may come back mangled or forged: only text or a whole number names a message, and
    only ASCII digits that a BIGINT holds can be our id; anything else names none.
    """
    if isinstance(ref, bool) or not isinstance(ref, str | int) or ref == "":
        return None, None
    text = str(ref)
    found = MESSAGE_ID.fullmatch(text)
    return text[:255], int(found.group(1)) if found else None


def mark_undelivered(shop: Shop, message_refs: tuple, reason: str) -> None:
    """A provider says one of our sent messages never arrived (a bounce, a drop, ``undelivered``):
    its log row becomes ``failed`` with ``reason``, so the Messages screen tells the truth and it
    no longer counts towards the customer's caps and fatigue. A replay changes nothing more."""
    from app.models import Message

    texts, ids = _named(message_keys(ref) for ref in message_refs)
    if not texts:
        return
    db.session.execute(
        sa.update(Message)
        .where(
            Message.shop_id == shop.id,
            Message.status == "sent",
            sa.or_(Message.provider_message_id.in_(texts), Message.id.in_(ids)),
        )
        .values(status="failed", reason=reason[:80], sent_at=None)
        .execution_options(synchronize_session="fetch")
    )


def _named(keys: Iterable[tuple[str | None, int | None]]) -> tuple[set[str], set[int]]:
    """The provider ids and our ids that ``message_keys`` answers name."""
    texts: set[str] = set()
    ids: set[int] = set()
    for text, message_id in keys:
        if text is not None:
            texts.add(text)
        if message_id is not None:
            ids.add(message_id)
    return texts, ids


def report_status(
    shop: Shop,
    profile: Profile | None,
    channel: str,
    status: str,
    metrics: dict[str, str],
    message_ref: str,
    properties: dict[str, Any],
    common: dict[str, Any],
) -> None:
    """A provider's status for one of our messages (Twilio, WhatsApp): engagement where it names a
    metric, a timeline event otherwise; one that never arrived (``bounced``) fails the message."""
    metric = metrics.get(status)
    if metric == "bounced":
        mark_undelivered(shop, (message_ref,), f"provider_{status}")
    if metric is not None:
        engage(shop, profile, channel=channel, metric=metric, properties=properties, **common)
    else:
        record_event(
            shop, profile, type=f"{channel}.{status}"[:60], channel=channel, properties=properties, **common
        )


def message_profile(shop: Shop, *message_refs: Any) -> Profile | None:
    """The profile a message we sent went to, from its id or the provider's message id."""
    return message_profiles(shop, [message_refs])[0]


def apply_planned(shop: Shop, planned: Planned) -> Profile | None:
    """Apply one planned delivery on its own: resolve, then store (the row-by-row path)."""
    from app.services.resolution import resolve

    profile = message_profile(shop, *planned.message_refs) if planned.message_refs else None
    if profile is None and planned.signal is not None:
        sig = planned.signal
        profile = resolve(
            shop,
            sig.idents,
            source=sig.source,
            seen_at=sig.seen_at,
            evidence=sig.evidence,
            sighting=sig.sighting,
        )
    if planned.after is not None:
        planned.after(profile, None, None)
    if profile is not None and planned.contact:
        refresh_search_text(profile)
    if planned.event is not None:
        stored = record_event(shop, profile, **planned.event)
        if stored is not None and profile is not None and planned.metric is not None:
            from app.services.engagement import apply_engagement

            apply_engagement(profile, *planned.metric, planned.event["occurred_at"])
    return profile


def message_profiles(shop: Shop, refs: list[tuple]) -> list[Profile | None]:
    """``message_profile`` for many rows' message references, in one read."""
    from app.models import Message
    from app.services.identifiers import live_profile

    keys = [[message_keys(ref) for ref in row_refs] for row_refs in refs]
    texts, ids = _named(key for row in keys for key in row)
    if not texts:
        return [None] * len(refs)
    by_text, by_id = {}, {}
    stmt = scoped(Message, shop.id, Message.id, Message.provider_message_id, Message.profile_id).where(
        sa.or_(Message.provider_message_id.in_(texts), Message.id.in_(ids))
    )
    for message_id, provider_id, profile_id in db.session.execute(stmt):
        by_id[message_id] = profile_id
        if provider_id is not None:
            by_text.setdefault(provider_id, profile_id)
    out: list[Profile | None] = []
    for row in keys:
        profile_id = None
        for text, message_id in row:
            if text is None or profile_id is not None:
                continue
            profile_id = by_text.get(text)
            if profile_id is None and message_id is not None:
                profile_id = by_id.get(message_id)
        out.append(live_profile(db.session.get(Profile, profile_id)) if profile_id is not None else None)
    return out


def refresh_search_texts(shop: Shop, profiles: Iterable[Profile]) -> None:
    """``refresh_search_text`` for many profiles, in one read of their emails and phones."""
    profiles = {p.id: p for p in profiles}
    if not profiles:
        return
    values: dict[int, list[str]] = {pid: [] for pid in profiles}
    stmt = (
        scoped(Identifier, shop.id, Identifier.profile_id, Identifier.value)
        .where(Identifier.profile_id.in_(list(profiles)), Identifier.kind.in_(("email", "phone")))
        .order_by(Identifier.profile_id, Identifier.kind, Identifier.value)
    )
    for profile_id, value in db.session.execute(stmt):
        values[profile_id].append(value)
    for profile_id, profile in profiles.items():
        text = search_text_of([profile.first_name or "", profile.last_name or "", *values[profile_id]])
        if profile.search_text != text:
            profile.search_text = text


def record_events(shop: Shop, rows: list[tuple[Profile | None, dict[str, Any]]]) -> list[bool]:
    """``record_event`` for many events in one ``INSERT … ON CONFLICT DO NOTHING RETURNING``.

    Returns, for each ``(profile, record_event keyword arguments)``, whether it was new
    (a replay, or a repeat earlier in ``rows``, is not); new events of the person's doing move
    ``last_seen_at`` (``is_persons_doing``).
    """
    if not rows:
        return []
    received_at = utcnow()
    values: dict[tuple[str, str], dict[str, Any]] = {}
    keys = []
    for profile, event in rows:
        key = (event["source"], event["external_id"][:255])
        keys.append(key)
        if key in values:
            continue
        values[key] = {
            "shop_id": shop.id,
            "profile_id": profile.id if profile is not None else None,
            "type": event["type"],
            "channel": event.get("channel"),
            "source": key[0],
            "external_id": key[1],
            "identifiers": ident_doc(event.get("found", ())),
            "properties": event.get("properties") or {},
            "occurred_at": event["occurred_at"],
            "received_at": received_at,
            "delivery_id": event.get("delivery_id"),
        }
    unique = ("shop_id", "source", "external_id")
    result = insert_new(Event.__table__, list(values.values()), unique, ("source", "external_id"))
    created = {(s, e) for s, e in result}
    out = []
    for key, (profile, event) in zip(keys, rows, strict=True):
        new = key in created
        created.discard(key)  # a repeat later in the batch is not new
        out.append(new)
        at = event["occurred_at"]
        if (
            new
            and profile is not None
            and is_persons_doing(event["type"])
            and _later(profile.last_seen_at, at)
        ):
            profile.last_seen_at = at
    return out
