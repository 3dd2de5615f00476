"""A campaign send: one audience gated and written in chunks, each chunk a job of its own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models.base import BigId, created_at, pk_id, shop_key

CHUNK_STATUSES = ("pending", "done", "failed")


class CampaignSend(db.Model):
    """One send of a campaign to an audience, and the moment every one of its messages carries."""

    __tablename__ = "campaign_sends"
    __table_args__ = (sa.UniqueConstraint("shop_id", "id"),)

    id: so.Mapped[pk_id]
    # No index of its own: the unique (shop_id, id) serves every lookup by shop.
    shop_id: so.Mapped[int] = so.mapped_column(BigId, sa.ForeignKey("shops.id", ondelete="CASCADE"))
    campaign_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    channel: so.Mapped[str] = so.mapped_column(sa.String(16))
    source: so.Mapped[str] = so.mapped_column(sa.String(20))
    # The send's moment: the messages of every chunk carry it, whenever their job runs.
    send_at: so.Mapped[dt.datetime]
    audience: so.Mapped[int]
    created_at: so.Mapped[created_at]


class CampaignChunk(db.Model):
    """A slice of a send's audience: gated, written and marked done in one transaction.

    The profile ids live here rather than only in the job's arguments, so that a chunk
    whose job Redis lost is found and queued again by the sweeper, and a job run twice
    finds its chunk done and writes nothing.
    """

    __tablename__ = "campaign_chunks"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["shop_id", "send_id"], ["campaign_sends.shop_id", "campaign_sends.id"], ondelete="CASCADE"
        ),
        sa.UniqueConstraint("send_id", "position"),
        sa.Index("ix_campaign_chunks_pending", "shop_id", "status"),
    )

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_key]
    send_id: so.Mapped[int] = so.mapped_column(BigId)
    position: so.Mapped[int]
    profile_ids: so.Mapped[list[Any]]
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="pending")
    sent: so.Mapped[int] = so.mapped_column(default=0)
    blocked: so.Mapped[int] = so.mapped_column(default=0)
    failed: so.Mapped[int] = so.mapped_column(default=0)
    reasons: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    last_error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    created_at: so.Mapped[created_at]
    done_at: so.Mapped[dt.datetime | None]
