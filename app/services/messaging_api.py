"""Turning the messaging API's JSON bodies into service calls, with clear 4xx errors.

Kept apart from the views so the console and tests share the parsing, and
apart from the services so they keep typed arguments.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any

from app.digits import whole_number
from app.errors import DomainError, NotFound, ValidationFailed
from app.models import Profile, Shop
from app.models.base import EARLIEST_TIME, utcnow
from app.services import consent, gate
from app.services.identifiers import KINDS, live_profile, normalise, profile_holding
from app.services.ingest.common import CLOCK_SKEW
from app.services.messaging import validate_request
from app.services.resolution import is_blocked, resolve
from app.tenancy import get_scoped

# A source naming one of these (``import``, ``Import``, ``klaviyo_import``, ``crm-sync``) is a tool's
# copy, not the customer's own act: it never lifts an opt-out unless the caller says ``explicit: true``.
# A consent source naming an import or a sync: one of its words (split at anything not a letter
# and between a lower-case letter and a capital) is one of these, or names another tool whose
# consents reach us by sync (``mailchimp``, ``klaviyo_api``, ``hubspot_crm``) unless another word
# names a signup form of that tool (``klaviyo_form``: the customer's own act, as ``privy_popup``);
# a word that merely holds a stem (``important``, ``async``) is no import. Such an opt-in never
# lifts an opt-out (``consent``).
TOOL_WORDS = frozenset(
    {"import", "imports", "imported", "importer", "importing", "sync", "syncs", "synced", "syncing"}
    | {"resync", "resynced", "synchronization", "synchronisation", "synchronize", "synchronise"}
    | {"migration", "migrated", "migrate", "backfill", "backfilled", "csv", "upload", "uploaded", "uploads"}
    | {"crm", "export", "exports", "exported", "webhook", "webhooks", "integration", "integrations"}
)
TOOL_NAMES = frozenset(
    {"klaviyo", "mailchimp", "omnisend", "attentive", "postscript", "hubspot", "salesforce", "braze"}
    | {"iterable", "brevo", "sendinblue", "drip", "zapier"}
)
FORM_WORDS = frozenset({"form", "forms", "popup", "signup", "checkout", "widget", "flyout", "landing"})


# The latest moment a consent, a gate check or a deadline may name: the calendar's own end
# overflows the gate's day and week arithmetic.
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def parse_time(value: Any, field: str) -> dt.datetime | None:
    """An ISO 8601 timestamp with an offset, between 1970 and 2100, or None when absent."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed(f"{field} must be an ISO 8601 timestamp", field=field) from None
    if parsed.tzinfo is None:
        raise ValidationFailed(f"{field} must carry a UTC offset", field=field)
    try:
        in_range = EARLIEST_TIME <= parsed < LATEST
    except OverflowError:  # an offset that takes it past the calendar's end
        in_range = False
    if not in_range:
        raise ValidationFailed(f"{field} must be between 1970 and 2100", field=field)
    return parsed


def _text(body: dict, key: str, required: bool = False, limit: int = 255) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise ValidationFailed(f"{key} is required", field=key)
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValidationFailed(f"{key} must be a string", field=key)
    value = str(value)
    if len(value) > limit:
        raise ValidationFailed(f"{key} is longer than {limit} characters", field=key)
    return value


def _words(body: dict, key: str, *, limit: int, why: str) -> str:
    """A text field that is evidence: a string with something in it besides spaces."""
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{key} is required as text: {why}", field=key)
    if len(value) > limit:
        raise ValidationFailed(f"{key} is longer than {limit} characters", field=key)
    return value


def _ip(body: dict) -> str | None:
    """The address consent was given from, if sent: legal evidence, so an IP address or a 422."""
    text = _text(body, "ip", limit=45)
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValidationFailed(f"ip {text[:45]!r} is not an IPv4 or IPv6 address", field="ip") from None


GATE_FIELDS = ("profile_id", "channel", "at")
MESSAGE_FIELDS = ("profile_id", "channel", "source", "campaign_id", "journey_id", "deadline", "content")


def known_fields(body: dict, fields: tuple[str, ...]) -> None:
    """Refuse a key the call does not know: a misspelt ``campain_id`` or ``when`` would otherwise be
    dropped in silence, and the message sent, or the gate asked about now, as if it were absent.

    Sends and checks only: an unsubscribe or an opt-out carrying a key we do not know is still
    the customer's word, and is recorded rather than refused.
    """
    unknown = sorted(k for k in body if k not in fields)
    if unknown:
        raise ValidationFailed(
            f"unknown field {unknown[0]!r}: this call takes {', '.join(fields)}", field=unknown[0]
        )


def is_tool_source(source: str) -> bool:
    """Whether a consent's source names an import, a sync or another tool (``TOOL_WORDS``): an
    opt-in from ``KlaviyoImport`` or ``csv_upload`` was taken for the customer's own word."""
    words = [w for w in re.split(r"[^a-z]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", source).lower()) if w]
    if "".join(words) in TOOL_NAMES or any(w in TOOL_WORDS for w in words):
        return True
    # A brand written in its own capitals splits in two: HubSpot, MailChimp, SendinBlue.
    names = {"".join(words[i : i + n]) for n in (1, 2, 3) for i in range(len(words))}
    return bool(names & TOOL_NAMES) and not any(w in FORM_WORDS for w in words)


def parse_identifier(shop: Shop, raw: Any):
    """``KIND:VALUE`` (or a bare email/phone) normalised to an ``Ident``.

    A value with a colon names its kind: ``emial:ann@example.org`` is refused for its
    unknown kind rather than kept as an email address nobody has.
    """
    if isinstance(raw, dict) and len(raw) == 1:
        kind, value = next(iter(raw.items()))
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationFailed(f"{kind} must be text, not {type(value).__name__}", field="identifier")
    elif isinstance(raw, str) and raw.strip():
        kind, sep, value = raw.strip().partition(":")
        if not sep:
            kind, value = ("email" if "@" in raw else "phone"), raw
            if kind == "phone" and _is_date(raw.strip()):
                # A CRM's date column mapped to the identifier: "2026-11-30" made a phone +4420261130.
                raise ValidationFailed(
                    f"{raw.strip()[:40]!r} is a date, not a phone: write phone:… or email:…",
                    field="identifier",
                )
    else:
        raise DomainError("identifier must be a string like email:ann@example.org", code="bad_identifier")
    kind = {"shopify": "shopify_customer"}.get(kind, kind)
    if kind not in KINDS:
        raise ValidationFailed(f"unknown identifier kind {kind!r}", field="identifier")
    ident = normalise(kind, value, shop.country)
    if ident is None or ident.kind == "raw_phone":
        raise ValidationFailed(f"{kind} {value!r} is not a usable identifier", field="identifier")
    return ident


DATE_LIKE = re.compile(r"(19|20)\d\d-\d\d-\d\d(?:[T ]\S*)?")


def _is_date(text: str) -> bool:
    """Whether ``text`` is written as a date (``2026-11-30``, ``2026-13-45``, with or without a
    time): the way no phone number is written, and a date column's values are."""
    return DATE_LIKE.fullmatch(text) is not None


def _profile_for(shop: Shop, body: dict, now: dt.datetime) -> Profile:
    """The profile a consent call names, created when nobody holds the identifier yet.

    A consent change sent by the merchant's tools (a CRM syncing opt-outs) is not the
    customer's doing: a known identifier is looked up, not resolved as a sighting, so the
    customer's last seen, stage and churn risk stay as their own activity left them. It
    also waits for no import or ingest batch (they hold the shop's identity lock).
    """
    ident = parse_identifier(shop, body.get("identifier"))
    if is_blocked(shop, ident):
        raise ValidationFailed("that identifier is blocked and cannot hold consent", field="identifier")
    profile = profile_holding(shop.id, ident) or resolve(shop, [ident], source="api", seen_at=now)
    if profile is None:
        raise ValidationFailed("that identifier is blocked and cannot hold consent", field="identifier")
    return profile


def record_from_request(shop: Shop, body: dict) -> dict[str, Any]:
    """``POST /consents``: append one record; answer the record and the derived states."""
    now = utcnow()
    channel = _text(body, "channel", required=True)
    status = _text(body, "status", required=True)
    if channel not in gate.CHANNELS:
        raise ValidationFailed(f"channel must be one of {', '.join(gate.CHANNELS)}", field="channel")
    if status == consent.OPTED_IN:
        # An opt-in is the permission every later message leans on, so its evidence is required and
        # written as text: a source of " " or 0, a consent text of " " or 1e30, or an opt-in dated
        # by the moment it reached us proves nothing.
        source = _words(body, "source", limit=40, why="where the consent was given, e.g. checkout")
        text = _words(body, "consent_text", limit=20_000, why="the exact wording shown")
        captured_at = parse_time(body.get("captured_at"), "captured_at")
        if captured_at is None:
            raise ValidationFailed(
                "captured_at is required: when the customer gave consent, with its offset",
                field="captured_at",
            )
    else:
        # An opt-out is the customer's word however it is sent (a CRM syncing them, a bare call):
        # recorded, never refused for a missing detail, from now when it names no moment.
        source = (_text(body, "source", limit=40) or "").strip() or "api"
        text = (_text(body, "consent_text", limit=20_000) or "").strip() or None
        captured_at = parse_time(body.get("captured_at"), "captured_at") or now
    explicit = body.get("explicit", not is_tool_source(source))
    if not isinstance(explicit, bool):
        raise ValidationFailed("explicit must be true or false", field="explicit")
    if captured_at > now + CLOCK_SKEW:
        raise ValidationFailed(
            "captured_at is in the future: send when the customer gave or withdrew consent",
            field="captured_at",
        )
    profile = _profile_for(shop, body, now)
    record = consent.record_consent(
        profile,
        channel,
        status,
        source=source,
        captured_at=captured_at,
        text=text,
        explicit=explicit,
        identifier=str(body.get("identifier"))[:320],
        ip=_ip(body),
        user_agent=_text(body, "user_agent", limit=2000),
    )
    return {
        "id": record.id,
        "profile_id": profile.id,
        "channel": channel,
        "status": status,
        "explicit": explicit,
        "states": consent.channel_states(profile),
        "globally_unsubscribed": profile.globally_unsubscribed,
    }


def unsubscribe_from_request(shop: Shop, body: dict) -> dict[str, Any]:
    """``POST /unsubscribe``: every channel off for the profile holding ``identifier``."""
    now = utcnow()
    profile = _profile_for(shop, body, now)
    consent.unsubscribe_all(
        profile,
        source=_text(body, "source", limit=40) or "api",
        captured_at=now,
        identifier=str(body.get("identifier"))[:320],
    )
    return {
        "profile_id": profile.id,
        "globally_unsubscribed": profile.globally_unsubscribed,
        "states": consent.channel_states(profile),
    }


def _profile_id(shop: Shop, body: dict) -> Profile:
    raw = body.get("profile_id")
    if isinstance(raw, bool) or not isinstance(raw, int):
        raw = whole_number(raw) if isinstance(raw, str) else None
        if raw is None:
            raise ValidationFailed("profile_id must be an integer", field="profile_id")
    profile = live_profile(get_scoped(Profile, shop.id, raw))
    if profile is None:
        raise NotFound(f"profile {raw} not found")
    return profile


def gate_request(shop: Shop, body: dict) -> tuple[Profile, str, dt.datetime | None]:
    """``POST /gate/check``: the profile (this shop's), the channel and ``at``."""
    known_fields(body, GATE_FIELDS)
    channel = _text(body, "channel", required=True)
    if channel not in gate.CHANNELS:
        raise ValidationFailed(f"channel must be one of {', '.join(gate.CHANNELS)}", field="channel")
    at = parse_time(body.get("at"), "at")
    return _profile_id(shop, body), channel, at


def message_request(shop: Shop, body: dict) -> dict[str, Any]:
    """``POST /messages``: keyword arguments for ``send_message``."""
    known_fields(body, MESSAGE_FIELDS)
    channel = _text(body, "channel", required=True)
    source = _text(body, "source", required=True)
    validate_request(channel, source)
    content = body.get("content")
    if content is not None and not isinstance(content, dict):
        raise ValidationFailed("content must be an object (subject, text, template)", field="content")
    return {
        "profile_id": _profile_id(shop, body).id,
        "channel": channel,
        "source": source,
        "campaign_id": _text(body, "campaign_id", limit=64),
        "journey_id": _text(body, "journey_id", limit=64),
        "deadline": parse_time(body.get("deadline"), "deadline"),
        "content": content,
    }
