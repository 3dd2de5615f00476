"""Shops, console users and API tokens: creation and authentication."""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import secrets

import phonenumbers
import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.models import ApiToken, Membership, Shop, User
from app.models.base import utcnow
from app.models.shop import ROLES
from app.plans import PLANS
from app.services.identifiers import normalise_email
from app.services.timezones import check_zone, zone_countries

TOKEN_PREFIX = "c360_"  # noqa: S105 - a label, not a secret
# A host name with a top-level domain: what Shopify names a shop (your-store.myshopify.com).
HOSTNAME = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def normalise_domain(domain: str) -> str:
    """Lower-case a shop domain and strip any scheme or path (a pasted admin URL names its shop)."""
    domain = domain.strip().lower()
    for scheme in ("https://", "http://"):
        if domain.startswith(scheme):
            domain = domain[len(scheme) :]
    return domain.split("/", 1)[0]


def shop_by_domain(domain: str) -> Shop | None:
    """The shop with this domain, or None."""
    return db.session.scalar(sa.select(Shop).where(Shop.domain == normalise_domain(domain)))


def require_shop(domain: str) -> Shop:
    """The shop with this domain, or ``NotFound``."""
    shop = shop_by_domain(domain)
    if shop is None:
        raise NotFound(f"no shop {domain!r}")
    return shop


def create_shop(
    domain: str,
    *,
    secret: str | None = None,
    plan: str = "free",
    timezone: str = "UTC",
    currency: str = "USD",
    country: str | None = None,
    **provider_secrets: str | None,
) -> Shop:
    """Create a shop after validating its plan, time zone, currency and country.

    Args:
        domain: the ``*.myshopify.com`` domain.
        secret: the Shopify app secret that signs webhooks.
        provider_secrets: ``twilio_auth_token``, ``whatsapp_app_secret``,
            ``whatsapp_verify_token``, ``sendgrid_public_key``.

    Raises:
        ValidationFailed: for an unknown plan, time zone or malformed code.
        Conflict: when the domain is taken.
    """
    domain = normalise_domain(domain)
    if not domain:
        raise ValidationFailed("a shop domain is required", field="domain")
    if not HOSTNAME.match(domain):
        raise ValidationFailed(
            f"{domain[:80]!r} is not a domain: give the shop's own, like your-store.myshopify.com",
            field="domain",
        )
    _check_shop_fields(plan, timezone, currency, country, provider_secrets, secret)
    existing = shop_by_domain(domain)
    if existing is not None:
        if existing.uninstalled_at is not None:
            raise Conflict(
                f"shop {domain} exists, uninstalled: "
                f"`c360 shop update --domain {domain} --reinstall` brings it back"
            )
        raise Conflict(f"shop {domain} already exists")
    shop = Shop(
        domain=domain,
        shopify_secret=secret,
        plan=plan,
        timezone=timezone,
        currency=currency.upper(),
        country=country.upper() if country else None,
        settings={},
        **{k: v for k, v in provider_secrets.items() if v},
    )
    db.session.add(shop)
    db.session.flush()
    return shop


PROVIDER_SECRETS = (
    "twilio_auth_token",
    "whatsapp_app_secret",
    "whatsapp_verify_token",
    "sendgrid_public_key",
)


@functools.cache
def known_countries() -> frozenset[str]:
    """ISO country codes a phone plan or the time zone table knows (AQ, PN, UM: no phone plan)."""
    return frozenset(phonenumbers.SUPPORTED_REGIONS) | zone_countries()


def _check_shop_fields(plan, timezone, currency, country, provider_secrets: dict, secret=None) -> None:
    """Refuse an unknown plan or time zone, a malformed code or key, or a secret given blank, before
    anything is written (an empty Shopify secret was stored, and every webhook then answered 401)."""
    for name, value in {"secret": secret, **provider_secrets}.items():
        if value is not None and not str(value).strip():
            raise ValidationFailed(
                f"{name.replace('_', ' ')} is empty: give the one the provider's settings show", field=name
            )
    if plan is not None and plan not in PLANS:
        raise ValidationFailed(f"unknown plan {plan!r}", field="plan")
    if timezone is not None:
        check_zone(timezone)
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise ValidationFailed("currency must be a 3-letter ISO code", field="currency")
    if country is not None and (len(country) != 2 or country.upper() not in known_countries()):
        # Phones without a country code are read in the shop's country: one no phone plan knows
        # (ZZ, a typo) would leave every national-format number unlinkable.
        raise ValidationFailed(f"country {country[:8]!r} is not a 2-letter ISO country code", field="country")
    unknown = set(provider_secrets) - set(PROVIDER_SECRETS)
    if unknown:
        raise ValidationFailed(f"unknown provider settings {sorted(unknown)}")
    key = provider_secrets.get("sendgrid_public_key")
    if key:
        check_sendgrid_key(key)


def check_sendgrid_key(key: str) -> None:
    """Refuse a SendGrid verification key that is not an elliptic-curve public key (PEM or base64
    DER): accepted as given, every SendGrid post was a 401 for ever and nobody was told why."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from app.services.ingest.signatures import load_sendgrid_key

    try:
        loaded = load_sendgrid_key(key)
    except (ValueError, TypeError, binascii.Error):
        loaded = None
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise ValidationFailed(
            "sendgrid public key is not one: paste the Verification Key from SendGrid's Signed Event "
            "Webhook settings (base64, or PEM with real line breaks)",
            field="sendgrid_public_key",
        )


def update_shop(
    shop: Shop,
    *,
    secret: str | None = None,
    plan: str | None = None,
    timezone: str | None = None,
    currency: str | None = None,
    country: str | None = None,
    reinstall: bool = False,
    **provider_secrets: str | None,
) -> list[str]:
    """Change what was given (a rotated secret, a new plan); return the names of what changed.

    ``reinstall`` clears ``uninstalled_at``: the merchant installed the app again.

    Raises:
        ValidationFailed: as ``create_shop`` does, for the values given.
    """
    given = {k: v for k, v in provider_secrets.items() if v is not None}
    _check_shop_fields(plan, timezone, currency, country, given, secret)
    changes = {
        "shopify_secret": secret,
        "plan": plan,
        "timezone": timezone,
        "currency": currency.upper() if currency else None,
        "country": country.upper() if country else None,
        **given,
    }
    changed = [name for name, value in changes.items() if value is not None and getattr(shop, name) != value]
    for name in changed:
        setattr(shop, name, changes[name])
    if reinstall and shop.uninstalled_at is not None:
        shop.uninstalled_at = None
        changed.append("reinstalled")
    return changed


def create_user(email: str, password: str, shop: Shop, role: str) -> User:
    """Create a console user, or give an existing one a role in another shop.

    An existing user's password is never changed here (``set_password`` does that): adding
    them to another shop takes their current password, so a create run twice with a new
    password cannot leave the operator believing the new one works.

    Raises:
        ValidationFailed: a bad role, email or a password under 8 characters.
        Conflict: the user already belongs to this shop (code ``user_exists``), or exists
            with another password (code ``other_password``).
    """
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}", field="role")
    email = valid_email(email)
    user = user_by_email(email)
    if user is None:
        user = User(email=email, password_hash=_password_hash(password))
        db.session.add(user)
        db.session.flush()
    elif db.session.scalar(
        sa.select(Membership).where(Membership.user_id == user.id, Membership.shop_id == shop.id)
    ):
        raise Conflict(f"user {email} already exists in {shop.domain}", code="user_exists")
    elif not check_password_hash(user.password_hash, password):
        raise Conflict(f"user {email} already exists with another password", code="other_password")
    db.session.add(Membership(user_id=user.id, shop_id=shop.id, role=role))
    db.session.flush()
    return user


def set_password(email: str, password: str) -> User:
    """Give an existing console user a new password.

    Raises:
        NotFound: no user has this email.
        ValidationFailed: a password under 8 characters.
    """
    user = user_by_email(email)
    if user is None:
        raise NotFound(f"no user {email.strip().lower()[:320]!r}")
    user.password_hash = _password_hash(password)
    user.end_sessions()  # whoever knew the old password is signed out
    db.session.flush()
    return user


def valid_email(raw: str) -> str:
    """``raw`` trimmed and lower-cased, or ``ValidationFailed`` when it is not an email address."""
    email = normalise_email(raw)
    if email is None or len(email) > 320:
        raise ValidationFailed(f"{raw[:80]!r} is not an email address", field="email")
    return email


def user_by_email(email: str) -> User | None:
    """The console user with this email (any case, spaces trimmed), or None."""
    return db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def _password_hash(password: str) -> str:
    if len(password) < 8:
        raise ValidationFailed("passwords need at least 8 characters", field="password")
    return generate_password_hash(password)


def authenticate(email: str, password: str) -> User | None:
    """The user with these credentials, or None (never says which part was wrong)."""
    user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        # Spend the same time as a real check so timing does not reveal accounts.
        check_password_hash(generate_password_hash("x"), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    user.last_login_at = utcnow()
    return user


# Failed sign-ins per account and minute before the account's sign-in waits for the next minute:
# a person retyping a password stays well under it, a script guessing passwords is slowed to a crawl.
FAILED_SIGN_INS_PER_MINUTE = 10


def sign_in_waits(email: str, minute: int) -> bool:
    """Whether the account failed ``FAILED_SIGN_INS_PER_MINUTE`` sign-ins in ``minute`` already.

    Counted on the account in the database, not in the web process: without Redis each gunicorn
    process counted its own, and with two the eleventh guess went through.
    """
    row = db.session.execute(
        sa.select(User.failed_sign_ins, User.failed_sign_ins_minute).where(
            User.email == email.strip().lower()
        )
    ).first()
    return (
        row is not None
        and row.failed_sign_ins_minute == minute
        and row.failed_sign_ins >= FAILED_SIGN_INS_PER_MINUTE
    )


def count_failed_sign_in(email: str, minute: int) -> None:
    """Count a failed sign-in on the account (none for an address no account has); one statement,
    so two processes counting at once both count."""
    first_of_minute = User.failed_sign_ins_minute != minute
    db.session.execute(
        sa.update(User)
        .where(User.email == email.strip().lower())
        .values(
            failed_sign_ins=sa.case((first_of_minute, 1), else_=User.failed_sign_ins + 1),
            failed_sign_ins_minute=minute,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def hash_token(token: str) -> str:
    """SHA-256 of an API token: tokens are long random strings, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(shop: Shop, name: str | None = None) -> str:
    """Create an API token for ``shop``; the plain token is returned once, never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiToken(shop_id=shop.id, token_hash=hash_token(token), prefix=token[:12], name=name))
    db.session.flush()
    return token


def shop_for_token(token: str) -> Shop | None:
    """The shop an API token belongs to, or None for an unknown or revoked token."""
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    row.last_used_at = utcnow()
    return row.shop
