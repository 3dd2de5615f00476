"""``c360 seed demo``: the demo shop, its owner login and plausible customers.

Running it again keeps the data and prints a fresh password, so ``make run``
can be repeated safely.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import Identifier, IdentifierLink, Order, OrderLine, Profile, User
from app.models.base import utcnow
from app.services import accounts
from app.services.consent import record_consent, unsubscribe_all
from app.services.counters import recompute_order_counters
from app.services.ingest.common import search_text_of

DOMAIN = "demo.myshopify.com"
OWNER_EMAIL = "owner@demo.example"
FIRST = [
    "Amelia",
    "Oliver",
    "Isla",
    "George",
    "Ava",
    "Noah",
    "Mia",
    "Leo",
    "Freya",
    "Arthur",
    "Lily",
    "Oscar",
    "Grace",
    "Harry",
    "Sophie",
    "Jack",
    "Emily",
    "Theo",
    "Chloe",
    "Finn",
]
LAST = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Wright",
    "Evans",
    "Walker",
    "Thomas",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Clarke",
]
PRODUCTS = [
    ("4", "41", "LS-M", "Linen shirt", "84.00"),
    ("7", "71", "SK-BLK", "Wool socks", "14.00"),
    ("9", "91", "CAP-NV", "Canvas cap", "22.00"),
    ("12", "121", "TB-L", "Tote bag", "35.00"),
    ("15", "151", "JK-M", "Waxed jacket", "189.00"),
]
# Socks wear out and are bought again; a customer buys each of the rest once. So the demo's
# replenishment reminders are for socks, as a real shop's would be.
CONSUMABLE = PRODUCTS[1]
DURABLES = [p for p in PRODUCTS if p is not CONSUMABLE]
CHANNELS = [("web", "online", None), ("web", "online", None), ("pos", "pos", "3001"), ("pos", "pos", "3002")]
REFERRERS = [("instagram", None), (None, "https://www.google.com/"), ("newsletter", None), (None, None)]


@dataclass
class Login:
    """The printed demo login."""

    email: str
    password: str


def _owner(shop) -> Login:
    password = secrets.token_urlsafe(9)
    user = db.session.scalar(sa.select(User).where(User.email == OWNER_EMAIL))
    if user is None:
        accounts.create_user(OWNER_EMAIL, password, shop, "owner")
    else:
        user.password_hash = generate_password_hash(password)
    return Login(OWNER_EMAIL, password)


def _customer(shop, rng: random.Random, index: int, now: dt.datetime) -> None:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}{index}@example.net".lower()
    # 07700 91xxxx: clear of the 900xxx numbers the Sarah story uses.
    phone = f"+4477009{index + 10000:05d}"
    seen = now - dt.timedelta(days=rng.randint(1, 400))
    profile = Profile(
        shop_id=shop.id,
        first_name=first,
        last_name=last,
        country="GB",
        search_text=search_text_of([first, last, email, phone]),
        first_seen_at=seen,
        last_seen_at=min(now, seen + dt.timedelta(days=rng.randint(0, 30))),
    )
    db.session.add(profile)
    db.session.flush()
    idents = [("email", email), ("phone", phone), ("web_client", f"c-demo-{index}")]
    if rng.random() < 0.6:
        idents.append(("shopify_customer", str(800000 + index)))
    rows = [
        Identifier(
            shop_id=shop.id,
            profile_id=profile.id,
            kind=kind,
            value=value,
            source="seed",
            first_seen_at=seen,
            last_seen_at=seen,
        )
        for kind, value in idents
    ]
    db.session.add_all(rows)
    db.session.flush()
    # Seen together, as the checkout that made the customer would link them: without the links a
    # new signal of theirs re-partitions the customer into one profile per identifier.
    ids = sorted(r.id for r in rows)
    db.session.add_all(
        IdentifierLink(
            shop_id=shop.id,
            a_id=a,
            b_id=b,
            relation="seen",
            source="seed",
            event_ref=f"seed-customer-{index}",
            first_seen_at=seen,
            last_seen_at=seen,
        )
        for n, a in enumerate(ids)
        for b in ids[n + 1 :]
    )
    bought: set[str] = set()
    for n in range(rng.choice([0, 0, 1, 1, 2, 3, 5, 8])):
        span = (now - seen).total_seconds()
        placed = seen + dt.timedelta(seconds=rng.uniform(0, span))
        _order(shop, rng, profile, email, placed, f"{index}{n}", bought)
    recompute_order_counters(profile)
    _consents(profile, rng, seen)


CONSENT_TEXTS = {
    "email": "Email me news and offers from Demo Goods. Unsubscribe any time.",
    "sms": "Text me offers from Demo Goods. Msg & data rates may apply. Reply STOP to opt out.",
}


def _consents(profile, rng: random.Random, seen: dt.datetime) -> None:
    """Most demo customers took email at checkout; fewer took SMS; a few left."""
    for channel, share in (("email", 0.65), ("sms", 0.3)):
        if rng.random() < share:
            record_consent(
                profile, channel, "opted_in", source="checkout", captured_at=seen, text=CONSENT_TEXTS[channel]
            )
    if rng.random() < 0.04:
        left = min(seen + dt.timedelta(days=30), utcnow())
        unsubscribe_all(profile, source="email_link", captured_at=left)


def _order(shop, rng, profile, email, placed, suffix, bought: set[str]) -> None:
    """One order: socks more often than not, and up to two things the customer has not bought yet."""
    source_name, channel, location = rng.choice(CHANNELS)
    utm, referrer = rng.choice(REFERRERS) if channel == "online" else (None, None)
    new = [p for p in DURABLES if p[0] not in bought]
    lines = rng.sample(new, min(len(new), rng.randint(0, 2)))
    if rng.random() < 0.6 or not lines:
        lines.append(CONSUMABLE)
    bought.update(p[0] for p in lines)
    total = sum(Decimal(p[4]) for p in lines)
    order = Order(
        shop_id=shop.id,
        profile_id=profile.id,
        source="shopify",
        external_id=f"9{suffix}",
        number=f"#{2000 + int(suffix)}",
        channel=channel,
        source_name=source_name,
        location_id=location,
        placed_at=placed,
        processed_at=placed,
        source_updated_at=placed,
        currency=shop.currency,
        total=total,
        subtotal=total,
        financial_status="paid",
        utm_source=utm,
        referring_site=referrer,
        email=email,
        billing_country="GB",
    )
    order.lines = [
        OrderLine(
            shop_id=shop.id,
            product_id=p[0],
            variant_id=p[1],
            sku=p[2],
            title=p[3],
            quantity=1,
            price=Decimal(p[4]),
        )
        for p in lines
    ]
    db.session.add(order)


def _enrich(shop, progress: Callable[[str], None]) -> None:
    """Run the first full enrichment so the dashboard opens with stages and scores."""
    from app.services import enrichment

    run, _ = enrichment.create_run(shop)
    run = enrichment.run_enrichment(shop.id, run.id)
    progress(f"  enriched {run.result['profiles']} profiles")


def seed_demo(customers: int = 300, progress: Callable[[str], None] = print) -> Login:
    """Create (or refresh) the demo shop and return the owner's login."""
    shop = accounts.shop_by_domain(DOMAIN)
    if shop is None:
        shop = accounts.create_shop(
            DOMAIN,
            secret=secrets.token_hex(16),
            plan="pro",
            timezone="Europe/London",
            currency="GBP",
            country="GB",
        )
        shop.name = "Demo Goods"
        rng = random.Random(360)
        now = utcnow()
        for index in range(customers):
            _customer(shop, rng, index, now)
            if index % 100 == 99:
                progress(f"  {index + 1}/{customers} customers")
        from seed.story import replay_sarah

        db.session.commit()
        replay_sarah(shop)
        _enrich(shop, progress)
    else:
        progress("Demo shop already exists: keeping its data.")
    login = _owner(shop)
    db.session.commit()
    return login
