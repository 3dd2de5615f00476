"""tenant-consistent keys for messages and the outbox

Revision ID: 5e2b8c4d1a60
Revises: 3c1d5e7a9b20
Create Date: 2026-11-28 23:58:00

A message pointed at its shop and at its profile with two foreign keys,
and an outbox item at its shop and its message with two more: four
checks per send, half the database's work for a campaign. One composite
key per row says more with less: ``messages (shop_id, profile_id) ->
profiles (shop_id, id)`` proves the profile exists *in the message's
shop* (and so the shop exists), and ``outbox (shop_id, message_id) ->
messages (shop_id, id)`` does the same for the outbox. The unique
``(shop_id, id)`` keys they need replace the plain ``shop_id`` indexes.
The provider message id index skips the rows that have none.
"""
import sqlalchemy as sa
from alembic import op


revision = "5e2b8c4d1a60"
down_revision = "3c1d5e7a9b20"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profiles_shop_id"))
        batch_op.create_unique_constraint(batch_op.f("uq_profiles_shop_id_id"), ["shop_id", "id"])

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_shop_id"))
        batch_op.drop_index(batch_op.f("ix_messages_provider_message_id"))
        batch_op.create_unique_constraint(batch_op.f("uq_messages_shop_id_id"), ["shop_id", "id"])
        batch_op.drop_constraint(batch_op.f("fk_messages_shop_id_shops"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_messages_profile_id_profiles"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_shop_id_profiles"),
            "profiles",
            ["shop_id", "profile_id"],
            ["shop_id", "id"],
            ondelete="CASCADE",
        )
    op.create_index(
        "ix_messages_provider_message_id",
        "messages",
        ["provider_message_id"],
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
        sqlite_where=sa.text("provider_message_id IS NOT NULL"),
    )

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_shop_id"))
        batch_op.drop_constraint(batch_op.f("fk_outbox_shop_id_shops"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_outbox_message_id_messages"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_shop_id_messages"),
            "messages",
            ["shop_id", "message_id"],
            ["shop_id", "id"],
            ondelete="CASCADE",
        )


def downgrade():
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_outbox_shop_id_messages"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_message_id_messages"), "messages", ["message_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_shop_id_shops"), "shops", ["shop_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index(batch_op.f("ix_outbox_shop_id"), ["shop_id"], unique=False)

    op.drop_index("ix_messages_provider_message_id", table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_messages_shop_id_profiles"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_profile_id_profiles"), "profiles", ["profile_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_shop_id_shops"), "shops", ["shop_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.drop_constraint(batch_op.f("uq_messages_shop_id_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_messages_provider_message_id"), ["provider_message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_shop_id"), ["shop_id"], unique=False)

    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_profiles_shop_id_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_profiles_shop_id"), ["shop_id"], unique=False)
