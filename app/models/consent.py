"""Consent: the exact texts people agreed to, and the append-only history."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models.base import created_at, pk_id, shop_fk, shop_ref
from app.models.profile import profile_fk

CONSENT_STATUSES = ("opted_in", "opted_out")


class ConsentText(db.Model):
    """A distinct consent wording, stored once with its hash and version."""

    __tablename__ = "consent_texts"
    __table_args__ = (sa.UniqueConstraint("shop_id", "sha256"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_ref]
    sha256: so.Mapped[str] = so.mapped_column(sa.String(64))
    version: so.Mapped[int] = so.mapped_column(default=1)
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    created_at: so.Mapped[created_at]


class ConsentRecord(db.Model):
    """One consent event for one channel (or ``all`` for a global unsubscribe).

    Rows are only ever appended; the current state of a channel is derived
    from them. Only GDPR erasure removes them.
    """

    __tablename__ = "consent_records"
    __table_args__ = (sa.Index("ix_consent_profile_channel", "profile_id", "channel", "captured_at"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_fk]
    profile_id: so.Mapped[int] = profile_fk(index=False)
    channel: so.Mapped[str] = so.mapped_column(sa.String(16))  # email|sms|whatsapp|push|all
    status: so.Mapped[str] = so.mapped_column(sa.String(16))
    # True when the customer acted (form, keyword, checkout box); False for imports/syncs.
    explicit: so.Mapped[bool] = so.mapped_column(default=True)
    consent_text_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("consent_texts.id", ondelete="SET NULL"), index=True
    )
    source: so.Mapped[str] = so.mapped_column(sa.String(40))
    identifier: so.Mapped[str | None] = so.mapped_column(sa.String(320))
    ip: so.Mapped[str | None] = so.mapped_column(sa.String(45))
    user_agent: so.Mapped[str | None] = so.mapped_column(sa.Text)
    captured_at: so.Mapped[dt.datetime]
    recorded_at: so.Mapped[created_at]
    external_ref: so.Mapped[str | None] = so.mapped_column(sa.String(255))

    text: so.Mapped[ConsentText | None] = so.relationship()


class ConsentState(db.Model):
    """The current state of one channel for one profile, derived from the history.

    A read model kept beside the history so the gate answers with one
    indexed read; it is rebuilt from ``consent_records`` whenever a record
    is appended, never edited on its own.
    """

    __tablename__ = "consent_states"
    __table_args__ = (sa.UniqueConstraint("profile_id", "channel"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_fk]
    profile_id: so.Mapped[int] = profile_fk(index=False)
    channel: so.Mapped[str] = so.mapped_column(sa.String(16))
    status: so.Mapped[str] = so.mapped_column(sa.String(16))
    record_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("consent_records.id", ondelete="SET NULL"), index=True
    )
    updated_at: so.Mapped[created_at]
