"""Shops, console users, their memberships and the shop's API tokens."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_login import UserMixin

from app.extensions import db
from app.models.base import created_at, pk_id, shop_fk, utcnow


class Shop(db.Model):
    """One Shopify store: the tenant every other row belongs to."""

    __tablename__ = "shops"

    id: so.Mapped[pk_id]
    domain: so.Mapped[str] = so.mapped_column(sa.String(255), unique=True)
    name: so.Mapped[str | None]
    plan: so.Mapped[str] = so.mapped_column(sa.String(20), default="free")
    timezone: so.Mapped[str] = so.mapped_column(sa.String(64), default="UTC")
    currency: so.Mapped[str] = so.mapped_column(sa.String(3), default="USD")
    country: so.Mapped[str | None] = so.mapped_column(sa.String(2))
    # Per-shop settings document (lifecycle windows, caps, quiet hours, identity).
    settings: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    # Provider secrets: used to verify inbound signatures, never logged.
    shopify_secret: so.Mapped[str | None]
    twilio_auth_token: so.Mapped[str | None]
    whatsapp_app_secret: so.Mapped[str | None]
    whatsapp_verify_token: so.Mapped[str | None]
    sendgrid_public_key: so.Mapped[str | None] = so.mapped_column(sa.Text)
    installed_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    uninstalled_at: so.Mapped[dt.datetime | None]
    first_enrichment_at: so.Mapped[dt.datetime | None]
    created_at: so.Mapped[created_at]

    def __repr__(self) -> str:
        return f"<Shop {self.id} {self.domain}>"


class User(UserMixin, db.Model):
    """A console login; reaches shops only through memberships."""

    __tablename__ = "users"

    id: so.Mapped[pk_id]
    email: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    password_hash: so.Mapped[str]
    name: so.Mapped[str | None]
    created_at: so.Mapped[created_at]
    last_login_at: so.Mapped[dt.datetime | None]
    # Failed sign-ins in the minute ``failed_sign_ins_minute`` (minutes since the epoch): counted on
    # the account, so every web process sees them (``accounts.sign_in_waits``).
    failed_sign_ins: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    failed_sign_ins_minute: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # Part of every session's user id (``get_id``): signing out or a new password moves it on, and
    # every session signed in before (a copied cookie, another browser) no longer loads the user.
    session_generation: so.Mapped[int] = so.mapped_column(default=0, server_default="0")

    memberships: so.Mapped[list[Membership]] = so.relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    def get_id(self) -> str:
        """The session's name for the user: ``<id>:<generation>`` (see ``session_generation``)."""
        return f"{self.id}:{self.session_generation}"

    def end_sessions(self) -> None:
        """Sign the account out everywhere: sessions made before now no longer load it."""
        self.session_generation += 1


ROLES = ("owner", "staff", "support", "agency")


class Membership(db.Model):
    """A user's role in one shop; agency users hold several."""

    __tablename__ = "memberships"
    __table_args__ = (sa.UniqueConstraint("user_id", "shop_id"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_fk]
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: so.Mapped[str] = so.mapped_column(sa.String(20))
    created_at: so.Mapped[created_at]

    user: so.Mapped[User] = so.relationship(back_populates="memberships")
    shop: so.Mapped[Shop] = so.relationship()


class ApiToken(db.Model):
    """An admin API token; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_fk]
    token_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    prefix: so.Mapped[str] = so.mapped_column(sa.String(12))
    name: so.Mapped[str | None]
    created_at: so.Mapped[created_at]
    last_used_at: so.Mapped[dt.datetime | None]
    revoked_at: so.Mapped[dt.datetime | None]

    shop: so.Mapped[Shop] = so.relationship()
