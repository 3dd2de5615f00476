"""Merges (reversible within the plan's window) and merge candidates."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models.base import BigId, created_at, pk_id, shop_ref
from app.models.profile import Identifier, profile_fk


class MergeCandidate(db.Model):
    """Two profiles that may be one person, waiting for a human decision."""

    __tablename__ = "merge_candidates"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "profile_a_id", "profile_b_id"),
        sa.Index("ix_merge_candidates_shop_status", "shop_id", "status"),
    )

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_ref]
    profile_a_id: so.Mapped[int] = profile_fk()
    profile_b_id: so.Mapped[int] = profile_fk()
    reason: so.Mapped[str] = so.mapped_column(sa.String(60))
    # Which identifier and which events made us think so.
    evidence: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    status: so.Mapped[str] = so.mapped_column(sa.String(12), default="open")
    created_at: so.Mapped[created_at]
    decided_at: so.Mapped[dt.datetime | None]
    decided_by: so.Mapped[str | None] = so.mapped_column(sa.String(120))


class Merge(db.Model):
    """A merge of ``loser`` into ``winner`` and what is needed to undo it exactly."""

    __tablename__ = "merges"
    __table_args__ = (sa.Index("ix_merges_shop_time", "shop_id", "created_at"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_ref]
    winner_id: so.Mapped[int] = profile_fk()
    loser_id: so.Mapped[int] = profile_fk()
    reason: so.Mapped[str] = so.mapped_column(sa.String(60))
    automatic: so.Mapped[bool] = so.mapped_column(default=False)
    candidate_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("merge_candidates.id", ondelete="SET NULL"), index=True
    )
    # Both profiles' rows and the ids of every row moved: personal data.
    snapshot: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    actor: so.Mapped[str | None] = so.mapped_column(sa.String(120))
    undo_deadline: so.Mapped[dt.datetime]
    undone_at: so.Mapped[dt.datetime | None]
    created_at: so.Mapped[created_at]
    merged_event_id: so.Mapped[int | None] = so.mapped_column(BigId)


LINK_RELATIONS = ("seen", "same", "not_same")


class IdentifierLink(db.Model):
    """Two identifiers and how we know about them: seen together, or a person's decision.

    ``seen`` links are the identity graph (one row per pair, ``a_id < b_id``,
    with the earliest and latest sighting); ``same`` and ``not_same`` record
    a human merge or a "not the same person" between two profiles' anchors,
    so re-resolving a neighbourhood never undoes what a person decided.
    """

    __tablename__ = "identifier_links"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "a_id", "b_id", "relation"),
        # By either end alone: a neighbourhood read asks for both ends, and deleting an
        # identifier (an erasure) follows both foreign keys to its links.
        sa.Index("ix_identifier_links_a", "a_id"),
        sa.Index("ix_identifier_links_b", "b_id"),
    )

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_ref]
    a_id: so.Mapped[int] = so.mapped_column(BigId, sa.ForeignKey("identifiers.id", ondelete="CASCADE"))
    b_id: so.Mapped[int] = so.mapped_column(BigId, sa.ForeignKey("identifiers.id", ondelete="CASCADE"))
    relation: so.Mapped[str] = so.mapped_column(sa.String(12), default="seen")
    source: so.Mapped[str] = so.mapped_column(sa.String(40))
    # The external id of the first signal that carried both (evidence for reviewers).
    event_ref: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    first_seen_at: so.Mapped[dt.datetime]
    last_seen_at: so.Mapped[dt.datetime]

    # For the unit of work's order only: a flush inserts identifiers before the links between them,
    # also when resolution named both before either was inserted (``id_blocks``). Never loaded.
    a: so.Mapped[Identifier] = so.relationship(foreign_keys=[a_id], lazy="raise")
    b: so.Mapped[Identifier] = so.relationship(foreign_keys=[b_id], lazy="raise")
