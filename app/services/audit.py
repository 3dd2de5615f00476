"""The audit log: who did what, written beside the change it records."""

from __future__ import annotations

from typing import Any

from app.extensions import db
from app.models import AuditLog


def record(*args: Any, **kwargs: Any) -> AuditLog:
    """Add an audit row to the session (``values``' arguments); it commits with the change it describes."""
    row = AuditLog(**values(*args, **kwargs))
    db.session.add(row)
    return row


def values(
    shop_id: int,
    actor: str,
    action: str,
    subject_type: str | None = None,
    subject_id: object = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit row's columns (but its id and time): who did what to which record, with the details."""
    return {
        "shop_id": shop_id,
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": None if subject_id is None else str(subject_id),
        "details": details or {},
    }
