"""Helpers for the identity tests: the Sarah story as identifier sets, and resolving by hand."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from app.extensions import db
from app.models import Event, Identifier, MergeCandidate, Profile
from app.services.identifiers import Ident, normalise
from app.services.resolution import resolve

T0 = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def _collect(body: dict):
    idents = [("web_client", body["clientId"])]
    for element in ((body.get("data") or {}).get("element") or {}).get("elements", []):
        if element.get("type") in ("email", "tel"):
            idents.append(("email" if element["type"] == "email" else "phone", element["value"]))
    checkout = (body.get("data") or {}).get("checkout") or {}
    idents += [("email", checkout.get("email")), ("phone", checkout.get("phone"))]
    idents.append(("shopify_customer", (body.get("customer") or {}).get("id")))
    return idents, when(body["timestamp"]), body["id"]


def _shopify(headers: dict, body: dict):
    if "customer_id" in body:  # consent topic
        idents = [("shopify_customer", body["customer_id"]), ("email", body.get("email_address"))]
        at = body["email_marketing_consent"]["consent_updated_at"]
    else:
        customer = body.get("customer") or {}
        idents = [("shopify_customer", customer.get("id")), ("email", body.get("email"))]
        idents += [
            ("phone", body.get("phone")),
            ("email", customer.get("email")),
            ("phone", customer.get("phone")),
        ]
        at = body["created_at"]
    return idents, when(at), headers["X-Shopify-Webhook-Id"]


def _whatsapp(body: dict):
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    at = dt.datetime.fromtimestamp(int(message["timestamp"]), dt.UTC)
    return [("phone", "+" + message["from"])], at, message["id"]


def sarah_signals(fixtures_dir) -> list[tuple[list, dt.datetime, str, str]]:
    """``(idents, seen_at, source, ref)`` for each of the story's nine requests, in order."""
    story = json.loads((fixtures_dir / "sarah" / "story.json").read_text())
    out = []
    for step in story["steps"]:
        request = step["request"]
        endpoint = request["endpoint"]
        if endpoint == "/collect":
            raw, at, ref = _collect(request["body"])
            source = "pixel"
        elif endpoint.startswith("/webhooks/shopify"):
            raw, at, ref = _shopify(request["headers"], request["body"])
            source = "shopify"
        else:
            raw, at, ref = _whatsapp(request["body"])
            source = "whatsapp"
        idents = [normalise(kind, value, "GB") for kind, value in raw if value is not None]
        out.append(([i for i in idents if i], at, source, ref))
    return out


def store_signal_event(shop, profile, idents, at, source, external_id):
    """The event ingest would store for a resolved signal, on the profile it resolved to."""
    identifiers: dict = {}
    for i in idents:
        identifiers.setdefault(i.kind, []).append(i.value)
    db.session.add(
        Event(
            shop_id=shop.id,
            profile_id=profile.id,
            type="signal",
            source=source,
            external_id=external_id,
            identifiers=identifiers,
            occurred_at=at,
        )
    )


def feed(shop, signals):
    """Resolve each signal and store an event on the returned profile, like ingest does."""
    profiles = []
    for n, (idents, at, source, ref) in enumerate(signals):
        profile = resolve(shop, idents, source=source, seen_at=at, evidence={"event_ref": ref})
        if profile is not None:
            store_signal_event(shop, profile, idents, at, source, f"{ref}-{n}")
            db.session.flush()
        profiles.append(profile)
    return profiles


def households(shop_model, numbers):
    """Two Shopify customers sharing a phone per number: a candidate each."""
    signals = []
    for n in numbers:
        phone = Ident("phone", f"+4477009{n:05d}")
        for k, who in enumerate((1000 + 2 * n, 1001 + 2 * n)):
            signals.append(
                ([Ident("shopify_customer", str(who)), phone], T0 + dt.timedelta(minutes=k), "t", f"h{n}{k}")
            )
    feed(shop_model, signals)
    db.session.commit()


def live_profiles(shop_id: int) -> list[Profile]:
    stmt = sa.select(Profile).where(Profile.shop_id == shop_id, Profile.merged_into_id.is_(None))
    return list(db.session.scalars(stmt.order_by(Profile.id)))


def partition_of(shop_id: int) -> frozenset[frozenset[tuple[str, str]]]:
    """The identifiers grouped by owning profile, as a set of sets (ids do not matter)."""
    groups: dict[int, set] = {}
    for kind, value, pid in db.session.execute(
        sa.select(Identifier.kind, Identifier.value, Identifier.profile_id).where(
            Identifier.shop_id == shop_id
        )
    ):
        groups.setdefault(pid, set()).add((kind, value))
    return frozenset(frozenset(g) for g in groups.values())


def open_candidates(shop_id: int) -> list[MergeCandidate]:
    stmt = sa.select(MergeCandidate).where(MergeCandidate.shop_id == shop_id, MergeCandidate.status == "open")
    return list(db.session.scalars(stmt))


def idents_of(profile: Profile) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    stmt = sa.select(Identifier).where(Identifier.profile_id == profile.id).order_by(Identifier.value)
    for row in db.session.scalars(stmt):
        out.setdefault(row.kind, []).append(row.value)
    return out
