"""The message log (every send attempt, sent or blocked) and the outbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models.base import BigId, created_at, shop_key
from app.models.profile import profile_in_shop_fk

MESSAGE_SOURCES = ("campaign", "journey", "time_sensitive", "manual")
# ``retried``: a waiting message whose next attempt was made (the attempt names it in ``retry_of_id``).
MESSAGE_STATUSES = ("sent", "blocked", "waiting", "retried", "missed", "failed")


class Message(db.Model):
    """One attempt to message a profile and what the gate decided."""

    __tablename__ = "messages"
    __table_args__ = (
        profile_in_shop_fk(),
        # The outbox's key target; it also serves every lookup by shop.
        sa.UniqueConstraint("shop_id", "id"),
        sa.Index("ix_messages_profile_sent", "profile_id", "status", "created_at"),
        sa.Index("ix_messages_shop_time", "shop_id", "created_at"),
        sa.Index(
            "ix_messages_provider_message_id",
            "provider_message_id",
            postgresql_where=sa.text("provider_message_id IS NOT NULL"),
            sqlite_where=sa.text("provider_message_id IS NOT NULL"),
        ),
        sa.Index("ix_messages_retry_of_id", "retry_of_id"),
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: so.Mapped[shop_key]
    profile_id: so.Mapped[int] = so.mapped_column(BigId)
    channel: so.Mapped[str] = so.mapped_column(sa.String(16))
    source: so.Mapped[str] = so.mapped_column(sa.String(20))
    campaign_id: so.Mapped[str | None] = so.mapped_column(sa.String(64), index=True)
    journey_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    status: so.Mapped[str] = so.mapped_column(sa.String(16))
    reason: so.Mapped[str | None] = so.mapped_column(sa.String(80))
    retry_at: so.Mapped[dt.datetime | None]
    # The customer's local calendar day of the send, for daily caps.
    local_day: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    # Set once a provider accepts the message; most rows never have one, so the index skips them.
    provider_message_id: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    created_at: so.Mapped[created_at]
    sent_at: so.Mapped[dt.datetime | None]
    # A message that waits (a journey's, a time-sensitive one) keeps what it says for its retry,
    # and each retry names the attempt it retries: two waiting messages alike are two messages.
    content: so.Mapped[dict[str, Any] | None]
    retry_of_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("messages.id", ondelete="SET NULL")
    )


class OutboxItem(db.Model):
    """A sent message handed to its transport: recorded here, and for a provider handed over after commit.

    Keyed by its message (a message has at most one item): no sequence and no second index
    per send, and the key holds the shop, as distribution by shop needs.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["shop_id", "message_id"], ["messages.shop_id", "messages.id"], ondelete="CASCADE"
        ),
    )

    shop_id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True)
    message_id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=False)
    channel: so.Mapped[str] = so.mapped_column(sa.String(16))
    # Where the item is bound: a provider's name, or "outbox" when recording it is the whole delivery.
    # Fixed at send time, so configuring a provider later never sends yesterday's outbox.
    transport: so.Mapped[str] = so.mapped_column(sa.String(20), default="outbox", server_default="outbox")
    recipient: so.Mapped[str] = so.mapped_column(sa.String(320))
    payload: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    created_at: so.Mapped[created_at]
