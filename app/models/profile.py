"""Profiles (one per person per shop), their identifiers and running counters.

The counter columns on ``Profile`` are kept current by ingest and can be
rebuilt from the rows they summarise (orders, events, messages), which is
what makes a merge undo exact. Enrichment columns are written by the
nightly/on-demand job.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models.base import BigId, created_at, pk_id, shop_fk, shop_ref, updated_at

LIFECYCLE_STAGES = ("new", "engaged", "converted", "loyal", "at_risk", "churned")
CHANNELS = ("email", "sms", "whatsapp", "push")
IDENTIFIER_KINDS = (
    "shopify_customer",
    "email",
    "phone",
    "web_client",
    "amazon_buyer",
    "ebay_user",
    "raw_phone",
)


def profile_in_shop_fk() -> sa.ForeignKeyConstraint:
    """``(shop_id, profile_id)`` -> ``profiles (shop_id, id)``: the profile exists, in the row's own shop.

    One check per inserted row instead of two (shop, then profile), and the form a
    Citus-style distribution by shop requires of keys between distributed tables.
    """
    return sa.ForeignKeyConstraint(
        ["shop_id", "profile_id"], ["profiles.shop_id", "profiles.id"], ondelete="CASCADE"
    )


def profile_fk(nullable: bool = False, index: bool = True):
    """A foreign key to ``profiles.id`` with the matching big-integer type."""
    return so.mapped_column(
        BigId, sa.ForeignKey("profiles.id", ondelete="CASCADE"), nullable=nullable, index=index
    )


class Profile(db.Model):
    """One shopper in one shop, as resolved from every identifier seen."""

    __tablename__ = "profiles"
    __table_args__ = (
        sa.Index("ix_profiles_shop_stage", "shop_id", "lifecycle_stage"),
        sa.Index("ix_profiles_shop_last_order", "shop_id", "last_order_at"),
        sa.Index("ix_profiles_shop_spend", "shop_id", "lifetime_spend"),
        # The target of tenant-consistent foreign keys, (shop_id, profile_id): a row can only
        # point at a profile of its own shop. It also serves every lookup by shop.
        sa.UniqueConstraint("shop_id", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))
    merged_into_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("profiles.id", ondelete="SET NULL"), index=True
    )

    first_name: so.Mapped[str | None]
    last_name: so.Mapped[str | None]
    # Lower-cased "first last email phone" for search; personal data.
    search_text: so.Mapped[str | None] = so.mapped_column(sa.Text)
    timezone: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    timezone_source: so.Mapped[str | None] = so.mapped_column(sa.String(20))
    country: so.Mapped[str | None] = so.mapped_column(sa.String(2))
    province: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    currency: so.Mapped[str | None] = so.mapped_column(sa.String(3))
    # Shopify's time of the customer or order version that last set the names, location and
    # currency above: a version delivered late, older than it, changes none of them.
    details_at: so.Mapped[dt.datetime | None]

    # Purchases, kept current by ingest.
    order_count: so.Mapped[int] = so.mapped_column(default=0)
    lifetime_spend: so.Mapped[Decimal] = so.mapped_column(default=Decimal("0"))
    online_count: so.Mapped[int] = so.mapped_column(default=0)
    online_spend: so.Mapped[Decimal] = so.mapped_column(default=Decimal("0"))
    pos_count: so.Mapped[int] = so.mapped_column(default=0)
    pos_spend: so.Mapped[Decimal] = so.mapped_column(default=Decimal("0"))
    pos_last_visit_at: so.Mapped[dt.datetime | None]
    preferred_location: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    marketplace_count: so.Mapped[int] = so.mapped_column(default=0)
    marketplace_spend: so.Mapped[Decimal] = so.mapped_column(default=Decimal("0"))
    first_order_at: so.Mapped[dt.datetime | None]
    last_order_at: so.Mapped[dt.datetime | None]
    acquisition_channel: so.Mapped[str | None] = so.mapped_column(sa.String(120))

    # Activity, kept current by ingest.
    first_seen_at: so.Mapped[dt.datetime | None]
    last_seen_at: so.Mapped[dt.datetime | None]
    last_engaged_at: so.Mapped[dt.datetime | None]

    # Consent summary derived from the append-only consent history.
    globally_unsubscribed: so.Mapped[bool] = so.mapped_column(default=False)
    globally_unsubscribed_at: so.Mapped[dt.datetime | None]

    # Enrichment, written by the enrichment job (and lifecycle by ingest).
    lifecycle_stage: so.Mapped[str] = so.mapped_column(sa.String(16), default="new")
    lifecycle_changed_at: so.Mapped[dt.datetime | None]
    engagement_score: so.Mapped[float | None]
    rfm_r: so.Mapped[int | None]
    rfm_f: so.Mapped[int | None]
    rfm_m: so.Mapped[int | None]
    churn_risk: so.Mapped[float | None]
    predicted_ltv_90d: so.Mapped[Decimal | None]
    predicted_next_order_at: so.Mapped[dt.datetime | None]
    enriched_at: so.Mapped[dt.datetime | None]

    erased_at: so.Mapped[dt.datetime | None]
    created_at: so.Mapped[created_at]
    updated_at: so.Mapped[updated_at]

    identifiers: so.WriteOnlyMapped[Identifier] = so.relationship(
        back_populates="profile", passive_deletes=True
    )

    @property
    def name(self) -> str | None:
        """First and last name joined, or None when neither is known."""
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) or None

    @classmethod
    def is_live(cls) -> sa.ColumnElement[bool]:
        """SQL: the profile is someone the shop has today, neither merged away nor erased.

        Lists, audiences, enrichment and headcounts read only these; totals that must
        survive an erasure (orders, revenue) count the erased too.
        """
        return sa.and_(cls.merged_into_id.is_(None), cls.erased_at.is_(None))

    @property
    def rfm_code(self) -> str | None:
        """The "R-F-M" code, e.g. "5-4-3", once enrichment has scored the profile."""
        if None in (self.rfm_r, self.rfm_f, self.rfm_m):
            return None
        return f"{self.rfm_r}-{self.rfm_f}-{self.rfm_m}"


class Identifier(db.Model):
    """A normalised identifier (email, phone, Shopify id, cookie…) owned by one profile."""

    __tablename__ = "identifiers"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "kind", "value"),
        sa.Index("ix_identifiers_value", "shop_id", "value"),
        # A profile's identifiers of one kind, oldest first: a send's recipient is the first row
        # of an index scan (no sort per recipient); lookups by profile alone use its prefix.
        sa.Index("ix_identifiers_profile_kind", "profile_id", "kind", "first_seen_at", "id"),
    )

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_ref]
    profile_id: so.Mapped[int] = profile_fk(index=False)
    kind: so.Mapped[str] = so.mapped_column(sa.String(20))
    value: so.Mapped[str] = so.mapped_column(sa.String(320))
    source: so.Mapped[str] = so.mapped_column(sa.String(40))
    # Set when the identifier is shared by too many people to link anyone.
    blocked_reason: so.Mapped[str | None] = so.mapped_column(sa.String(60))
    first_seen_at: so.Mapped[dt.datetime]
    last_seen_at: so.Mapped[dt.datetime]

    profile: so.Mapped[Profile] = so.relationship(back_populates="identifiers")


class EngagementCounter(db.Model):
    """How often a profile was sent/opened/clicked… on one channel, kept incrementally."""

    __tablename__ = "engagement_counters"
    __table_args__ = (sa.UniqueConstraint("profile_id", "channel", "metric"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_fk]
    profile_id: so.Mapped[int] = profile_fk(index=False)
    channel: so.Mapped[str] = so.mapped_column(sa.String(16))
    metric: so.Mapped[str] = so.mapped_column(sa.String(16))
    count: so.Mapped[int] = so.mapped_column(default=0)
    last_at: so.Mapped[dt.datetime | None]
