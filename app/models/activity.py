"""Events (every signal on a timeline) and orders with their line items."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models.base import BigId, created_at, pk_id, shop_fk, shop_ref
from app.models.profile import profile_fk

ORDER_CHANNELS = ("online", "pos", "marketplace")


class Event(db.Model):
    """One typed signal: a page view, an email open, a support touch, a stage change…

    ``(shop_id, source, external_id)`` is unique so a signal delivered twice
    is stored once.
    """

    __tablename__ = "events"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "source", "external_id"),
        sa.Index("ix_events_profile_time", "profile_id", "occurred_at"),
        sa.Index("ix_events_shop_type_time", "shop_id", "type", "occurred_at"),
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: so.Mapped[shop_ref]
    profile_id: so.Mapped[int | None] = profile_fk(nullable=True, index=False)
    type: so.Mapped[str] = so.mapped_column(sa.String(60))
    channel: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    source: so.Mapped[str] = so.mapped_column(sa.String(40))
    external_id: so.Mapped[str] = so.mapped_column(sa.String(255))
    # The identifiers this event carried, normalised: {"email": [...], ...}.
    identifiers: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    properties: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    occurred_at: so.Mapped[dt.datetime]
    received_at: so.Mapped[created_at]
    delivery_id: so.Mapped[int | None] = so.mapped_column(
        BigId, sa.ForeignKey("webhook_deliveries.id", ondelete="SET NULL"), index=True
    )


class Order(db.Model):
    """An order from Shopify (online or POS) or a marketplace, in shop money."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "source", "external_id"),
        sa.Index("ix_orders_profile_placed", "profile_id", "placed_at"),
        sa.Index("ix_orders_shop_number", "shop_id", "number"),
    )

    id: so.Mapped[int] = so.mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: so.Mapped[shop_ref]
    profile_id: so.Mapped[int | None] = profile_fk(nullable=True, index=False)
    source: so.Mapped[str] = so.mapped_column(sa.String(20))  # shopify, amazon, ebay
    external_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    number: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    channel: so.Mapped[str] = so.mapped_column(sa.String(16))  # online, pos, marketplace
    source_name: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    location_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    placed_at: so.Mapped[dt.datetime]
    processed_at: so.Mapped[dt.datetime | None]
    # The source's own updated_at: only a newer version is applied.
    source_updated_at: so.Mapped[dt.datetime | None]
    currency: so.Mapped[str] = so.mapped_column(sa.String(3))
    presentment_currency: so.Mapped[str | None] = so.mapped_column(sa.String(3))
    total: so.Mapped[Decimal]
    # The total in the customer's currency (a multi-currency order): a refund that comes alone,
    # paid back in that currency with no money sets, is converted at this order's rate.
    presentment_total: so.Mapped[Decimal | None]
    subtotal: so.Mapped[Decimal | None]
    total_discounts: so.Mapped[Decimal | None]
    total_tax: so.Mapped[Decimal | None]
    refunded: so.Mapped[Decimal] = so.mapped_column(default=Decimal("0"))
    financial_status: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    cancelled_at: so.Mapped[dt.datetime | None]
    # Shopify's test order (Bogus Gateway, a provider's test mode): kept and shown, never a purchase.
    test: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    discount_codes: so.Mapped[list[Any]] = so.mapped_column(default=list)
    landing_site: so.Mapped[str | None] = so.mapped_column(sa.Text)
    referring_site: so.Mapped[str | None] = so.mapped_column(sa.Text)
    utm_source: so.Mapped[str | None] = so.mapped_column(sa.String(120))
    billing_country: so.Mapped[str | None] = so.mapped_column(sa.String(2))
    billing_province: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    shipping_country: so.Mapped[str | None] = so.mapped_column(sa.String(2))
    shipping_province: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    email: so.Mapped[str | None] = so.mapped_column(sa.String(320))
    phone: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    customer_name: so.Mapped[str | None]
    created_at: so.Mapped[created_at]

    lines: so.Mapped[list[OrderLine]] = so.relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id"
    )

    @property
    def net_total(self) -> Decimal:
        """What the order is worth now: zero when cancelled or a test, else total less refunds."""
        if self.cancelled_at is not None or self.test:
            return Decimal("0")
        return self.total - (self.refunded or Decimal("0"))

    @property
    def is_purchase(self) -> bool:
        """Whether the order counts as a purchase (``purchases``, in Python)."""
        refunded = self.refunded or Decimal("0")
        return self.cancelled_at is None and not self.test and not (self.total > 0 and refunded >= self.total)

    @classmethod
    def purchases(cls) -> sa.ColumnElement[bool]:
        """The orders that count as purchases: not cancelled, not a test, and not refunded in full.

        A customer who sent back everything they bought has bought nothing: counted, two fully
        refunded orders made them "loyal", a buyer in the shop's totals and a reorder reminder
        for what they returned. A free order (a total of zero) is still a purchase.
        """
        return sa.and_(
            cls.cancelled_at.is_(None),
            cls.test.is_(False),
            sa.not_(sa.and_(cls.total > 0, cls.refunded >= cls.total)),
        )


class OrderLine(db.Model):
    """One line item of an order."""

    __tablename__ = "order_lines"

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_fk]
    order_id: so.Mapped[int] = so.mapped_column(
        BigId, sa.ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    external_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    product_id: so.Mapped[str | None] = so.mapped_column(sa.String(64), index=True)
    variant_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    sku: so.Mapped[str | None] = so.mapped_column(sa.String(120))
    title: so.Mapped[str | None]
    quantity: so.Mapped[int] = so.mapped_column(default=1)
    price: so.Mapped[Decimal] = so.mapped_column(default=Decimal("0"))

    order: so.Mapped[Order] = so.relationship(back_populates="lines")


class ProductInterval(db.Model):
    """A product's typical days between one customer's purchases, as the last enrichment measured it.

    Rewritten whole for the shop by each enrichment run (``app.analytics.replenishment``);
    a customer's replenishment due dates are their last purchase plus this interval.
    """

    __tablename__ = "product_intervals"
    __table_args__ = (sa.UniqueConstraint("shop_id", "product_id"),)

    id: so.Mapped[pk_id]
    shop_id: so.Mapped[shop_ref]
    product_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    title: so.Mapped[str | None]
    median_days: so.Mapped[float]
    gaps: so.Mapped[int]  # repurchases the median was taken over
    buyers: so.Mapped[int]  # customers who made them
    computed_at: so.Mapped[created_at]
