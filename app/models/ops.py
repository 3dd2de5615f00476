"""Operational tables: the durable webhook inbox, job runs and the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models.base import BigId, created_at, pk_id, shop_fk, shop_ref

DELIVERY_STATUSES = ("pending", "processing", "processed", "failed", "dead", "waiting")


class WebhookDelivery(db.Model):
    """A raw inbound delivery, committed before we answer 200 (the durable inbox).

    ``status`` moves pending → processed, or failed (retry scheduled at
    ``next_attempt_at``) → dead after the last attempt (the dead-letter queue).
    ``waiting`` holds deliveries whose pipeline is not built yet; they are
    kept, never dropped.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "provider", "external_id"),
        sa.Index("ix_deliveries_status", "status", "next_attempt_at"),
        sa.Index("ix_deliveries_shop_status", "shop_id", "status"),
        # A shop's rows still to work, in delivery order: a drain's claim reads the next batch
        # straight off it, however many rows wait (processed rows leave it).
        sa.Index(
            "ix_deliveries_workable",
            "shop_id",
            "id",
            postgresql_where=sa.text("status IN ('pending', 'failed', 'processing')"),
            sqlite_where=sa.text("status IN ('pending', 'failed', 'processing')"),
        ),
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: so.Mapped[shop_ref]
    provider: so.Mapped[str] = so.mapped_column(sa.String(20))
    topic: so.Mapped[str] = so.mapped_column(sa.String(80))
    external_id: so.Mapped[str] = so.mapped_column(sa.String(255))
    event_id: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    triggered_at: so.Mapped[dt.datetime | None]
    api_version: so.Mapped[str | None] = so.mapped_column(sa.String(20))
    headers: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    body: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    status: so.Mapped[str] = so.mapped_column(sa.String(12), default="pending")
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    last_error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    next_attempt_at: so.Mapped[dt.datetime | None]
    received_at: so.Mapped[created_at]
    processed_at: so.Mapped[dt.datetime | None]


class JobRun(db.Model):
    """Progress of a long job (enrichment, backfill), keyed by the queue's job id."""

    __tablename__ = "job_runs"

    id: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    shop_id: so.Mapped[shop_fk]
    kind: so.Mapped[str] = so.mapped_column(sa.String(40))
    status: so.Mapped[str] = so.mapped_column(sa.String(12), default="queued")
    progress: so.Mapped[int] = so.mapped_column(default=0)
    total: so.Mapped[int | None]
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    result: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    created_at: so.Mapped[created_at]
    started_at: so.Mapped[dt.datetime | None]
    finished_at: so.Mapped[dt.datetime | None]


class AuditLog(db.Model):
    """Who did what to which record, for merges, erasures, settings and logins."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_shop_time", "shop_id", "created_at"),)

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: so.Mapped[shop_ref]
    actor: so.Mapped[str] = so.mapped_column(sa.String(120))
    action: so.Mapped[str] = so.mapped_column(sa.String(60))
    subject_type: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    subject_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    details: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    created_at: so.Mapped[created_at]


class RollupSnapshot(db.Model):
    """Precomputed shop totals (lifecycle mix, coverage, fatigue) for dashboards."""

    __tablename__ = "rollup_snapshots"
    __table_args__ = (sa.UniqueConstraint("shop_id", "kind"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_ref]
    kind: so.Mapped[str] = so.mapped_column(sa.String(40))
    data: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    computed_at: so.Mapped[created_at]
