"""sends live in the message log only

Revision ID: 3c1d5e7a9b20
Revises: 87f7a0ce90d2
Create Date: 2026-11-28 23:55:00

A send used to be written three times: the ``messages`` row, a
``<channel>.sent`` event (source ``c360``) and a ``sent`` engagement
counter. The profile now counts its sends from the message log, so the
copies go: the events are deleted and the ``sent`` counters are rebuilt
from what is left (sends that other systems reported through the API).
The downgrade rebuilds the copies from the message log.
"""
from alembic import op


revision = "3c1d5e7a9b20"
down_revision = "87f7a0ce90d2"
branch_labels = None
depends_on = None

REBUILD_SENT_COUNTERS = """
INSERT INTO engagement_counters (shop_id, profile_id, channel, metric, count, last_at)
SELECT shop_id, profile_id, channel, 'sent', COUNT(*), MAX(occurred_at)
FROM events
WHERE profile_id IS NOT NULL AND channel IS NOT NULL AND type = channel || '.sent'
GROUP BY shop_id, profile_id, channel
"""


def upgrade():
    op.execute("DELETE FROM events WHERE source = 'c360' AND type = channel || '.sent'")
    op.execute("DELETE FROM engagement_counters WHERE metric = 'sent'")
    op.execute(REBUILD_SENT_COUNTERS)


def downgrade():
    op.execute(
        """
        INSERT INTO events (shop_id, profile_id, type, channel, source, external_id,
                            identifiers, properties, occurred_at, received_at)
        SELECT shop_id, profile_id, channel || '.sent', channel, 'c360', 'message-' || id,
               '{}', '{}', created_at, created_at
        FROM messages WHERE status = 'sent'
        """
    )
    op.execute("DELETE FROM engagement_counters WHERE metric = 'sent'")
    op.execute(REBUILD_SENT_COUNTERS)
