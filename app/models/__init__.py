"""Every model, imported here so Alembic and the app see the whole schema."""

from app.models.activity import Event, Order, OrderLine, ProductInterval
from app.models.campaigns import CampaignChunk, CampaignSend
from app.models.consent import ConsentRecord, ConsentState, ConsentText
from app.models.identity import IdentifierLink, Merge, MergeCandidate
from app.models.messaging import Message, OutboxItem
from app.models.ops import AuditLog, JobRun, RollupSnapshot, WebhookDelivery
from app.models.profile import EngagementCounter, Identifier, Profile
from app.models.shop import ApiToken, Membership, Shop, User

__all__ = [
    "ApiToken",
    "AuditLog",
    "CampaignChunk",
    "CampaignSend",
    "ConsentRecord",
    "ConsentState",
    "ConsentText",
    "EngagementCounter",
    "Event",
    "Identifier",
    "IdentifierLink",
    "JobRun",
    "Membership",
    "Merge",
    "MergeCandidate",
    "Message",
    "Order",
    "OrderLine",
    "OutboxItem",
    "ProductInterval",
    "Profile",
    "RollupSnapshot",
    "Shop",
    "User",
    "WebhookDelivery",
]
