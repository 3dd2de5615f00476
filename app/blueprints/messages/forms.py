"""The message log's filter bar: which filters exist and the values to offer."""

import sqlalchemy as sa

from app.extensions import db
from app.models import Message
from app.models.messaging import MESSAGE_SOURCES, MESSAGE_STATUSES
from app.services.gate import CHANNELS

FILTERS = ("reason", "channel", "campaign_id", "status", "source")
REASON_KINDS = (
    "erased",
    "global_unsubscribe",
    "no_consent",
    "global_cap_reached",
    "channel_cap_reached",
    "fatigue",
    "quiet_hours",
    "no_address",
    # The provider's word after the gate allowed the send (``deliver_message``, ``mark_undelivered``).
    "provider_opted_out",
    "provider_rejected",
    "provider_unreachable",
    "provider_bounce",
    "provider_dropped",
    "provider_undelivered",
    "provider_failed",
)


def filter_choices(shop_id: int) -> dict[str, list[str]]:
    """The values each filter offers; campaigns are the shop's own ids."""
    campaigns = db.session.scalars(
        sa.select(Message.campaign_id)
        .where(Message.shop_id == shop_id, Message.campaign_id.is_not(None))
        .distinct()
        .order_by(Message.campaign_id)
        .limit(200)
    )
    return {
        "reason": list(REASON_KINDS),
        "channel": list(CHANNELS),
        "campaign_id": list(campaigns),
        "status": list(MESSAGE_STATUSES),
        "source": list(MESSAGE_SOURCES),
    }


def refused_filter(filters: dict[str, str | None], choices: dict[str, list[str]]) -> str | None:
    """What is wrong with a filter value no choice offers (a typed or stale link), else None.

    An unknown channel or status matched nothing and showed an empty log, as if the shop had
    sent nothing; a campaign id is the shop's own and may be any text.
    """
    for key in ("reason", "channel", "status", "source"):
        value = filters.get(key)
        if value is not None and value not in choices[key]:
            offered = ", ".join(choices[key])
            return f"No {key.replace('_', ' ')} is called {value[:40]!r}: choose one of {offered}."
    return None
