"""SendGrid event webhook: opens, clicks, deliveries, bounces, spam reports, unsubscribes.

A spam report or an unsubscribe revokes email consent; both are the
recipient's own act, so they are explicit opt-outs. So does a drop because
the address is on SendGrid's unsubscribe or spam report list
(``provider_opt_outs``).
"""

from __future__ import annotations

from typing import Any

from app.analytics.engagement import is_persons_doing
from app.models import Shop, WebhookDelivery
from app.services.consent import OPTED_OUT, record_consent
from app.services.ingest import refused
from app.services.ingest.common import (
    BadPayload,
    CheckedBatch,
    Planned,
    apply_planned,
    check_each,
    idents,
    mark_undelivered,
    message_profile,
    not_after,
    parse_time,
    record_event,
)
from app.services.ingest.refused import DeadLetter
from app.services.provider_opt_outs import is_sendgrid_opt_out, record_opt_out
from app.services.resolution import Signal, resolve

SOURCE = "sendgrid"
EVENTS = frozenset(
    {
        "processed",
        "deferred",
        "delivered",
        "open",
        "click",
        "bounce",
        "dropped",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)
# SendGrid event -> engagement metric (counted); "processed" is counted as sent by the sender itself.
METRICS = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "dropped": "bounced",
}
OPT_OUTS = frozenset({"spamreport", "unsubscribe", "group_unsubscribe"})
# An open made by a mail client's privacy proxy (Apple Mail Privacy Protection fetches every
# message): SendGrid flags it ``sg_machine_open``. It stays on the timeline for what it is, and
# counts neither as an open nor as the customer being seen.
MACHINE_OPEN = "machine_opened"


def _action(event: dict) -> str:
    """What the event says happened, as the ``email.<action>`` event type names it."""
    kind = event["event"]
    if kind == "open" and event.get("sg_machine_open") is True:
        return MACHINE_OPEN
    return METRICS.get(kind, kind)


def parse_events(body: Any) -> CheckedBatch:
    """A SendGrid batch: its valid events, and the others with their reasons (each naming its position).

    The others go to the dead-letter queue (``dead_letters``) and the batch is answered 200:
    SendGrid sends a batch again on any other answer, for up to 72 hours.

    There is no cap on the number of events: SendGrid fills a post by size, so several thousand
    small events come in one, and a cap refused the whole post, its unsubscribes included, until
    SendGrid gave up on it. The request body limit (``MAX_CONTENT_LENGTH``, 1 MiB, above
    SendGrid's own batch size) is the bound, and the batch is stored in one insert.

    Raises:
        BadPayload: not a non-empty JSON array of events, or no event of it is valid (nothing
            in it is SendGrid's format: refused whole, nothing stored).
    """
    if not isinstance(body, list) or not body:
        raise BadPayload("SendGrid posts a non-empty JSON array of events")
    checked = check_each(body, _check_event, batch=True)
    if not checked.events:
        raise checked.refusal()
    return checked


def dead_letters(checked: CheckedBatch) -> list[DeadLetter]:
    """The batch's refused events, each under its ``sg_event_id`` (or a hash) and its event name."""
    return refused.dead_letters(
        checked, lambda e: (refused.field(e, "event"), refused.field(e, "sg_event_id"), e)
    )


def _check_event(event: Any, where: str) -> None:
    if not isinstance(event, dict):
        raise BadPayload(f"{where}: an event must be a JSON object")
    if not isinstance(event.get("event"), str) or event["event"] not in EVENTS:
        raise BadPayload(f"{where}: unknown event {str(event.get('event'))[:40]!r}")
    if not isinstance(event.get("email"), str) or not event["email"].strip():
        raise BadPayload(f"{where}: email is required")
    if not isinstance(event.get("sg_event_id"), str) or not event["sg_event_id"]:
        raise BadPayload(f"{where}: sg_event_id is required")
    if len(event["sg_event_id"]) > 255:
        raise BadPayload(f"{where}: sg_event_id is longer than 255 characters")
    parse_time(event.get("timestamp"), f"{where}: timestamp")


def plan_sendgrid_event(shop: Shop, event: dict, delivery: WebhookDelivery | None) -> Planned:
    """Parse a stored SendGrid event: its recipient and the engagement (or other) event.

    Opt-outs carry their consent change in ``after`` (applied only when the event is new).
    """
    _check_event(event, "event")
    at = not_after(parse_time(event["timestamp"]), delivery)
    kind = event["event"]
    found = idents(shop, [("email", event["email"])])
    provider_id = str(event.get("sg_message_id") or "").split(".", 1)[0]
    props = {k: event.get(k) for k in ("url", "reason", "status", "c360_message_id", "sg_message_id")}
    action = _action(event)
    etype = f"email.{action}"
    return Planned(
        signal=Signal(
            tuple(found), SOURCE, at, {"sendgrid_event": event["sg_event_id"]}, is_persons_doing(etype)
        ),
        event={
            "type": etype,
            "channel": "email",
            "source": SOURCE,
            "external_id": event["sg_event_id"],
            "occurred_at": at,
            "found": found,
            "properties": {"event": kind, **{k: v for k, v in props.items() if v not in (None, "")}},
            "delivery_id": delivery.id if delivery else None,
        },
        metric=("email", action) if kind in METRICS and action != MACHINE_OPEN else None,
        message_refs=(event.get("c360_message_id"), provider_id),
        after=_undelivered(shop, (event.get("c360_message_id"), provider_id), kind),
    )


def _undelivered(shop: Shop, refs: tuple, kind: str):
    """For a bounce or a drop (the mail never reached the inbox), the step that fails the message
    it reports on (``mark_undelivered``); None otherwise."""
    if METRICS.get(kind) != "bounced":
        return None
    return lambda *_: mark_undelivered(shop, refs, f"provider_{kind}")


def is_opt_out(event: dict) -> bool:
    """A spam report, an unsubscribe, or a drop because the address is on SendGrid's list of either
    (``provider_opt_outs``): the batch path leaves these to ``apply_sendgrid_event``."""
    if not isinstance(event, dict):  # a refused event retried from the dead-letter queue
        return False
    kind = event.get("event")
    return isinstance(kind, str) and (kind in OPT_OUTS or is_sendgrid_opt_out(event))


def apply_sendgrid_event(shop: Shop, event: dict, delivery: WebhookDelivery | None) -> None:
    """Count the engagement on the recipient's profile, or record the opt-out."""
    planned = plan_sendgrid_event(shop, event, delivery)
    if not is_opt_out(event):
        apply_planned(shop, planned)
        return
    if is_sendgrid_opt_out(event):  # a drop: the message failed, and the list it is on is an opt-out
        profile = apply_planned(shop, planned)
        if profile is not None:
            found = planned.event["found"]
            record_opt_out(
                profile,
                "email",
                provider=SOURCE,
                at=planned.event["occurred_at"],
                external_ref=event["sg_event_id"],
                identifier=found[0].value if found else None,
            )
        return
    profile = message_profile(shop, *planned.message_refs) or resolve(
        shop,
        planned.signal.idents,
        source=SOURCE,
        seen_at=planned.signal.seen_at,
        evidence=planned.signal.evidence,
    )
    stored = record_event(shop, profile, **planned.event)
    if stored is not None and profile is not None:
        found = planned.event["found"]
        record_consent(
            profile,
            "email",
            OPTED_OUT,
            source=f"sendgrid_{event['event']}",
            captured_at=planned.event["occurred_at"],
            identifier=found[0].value if found else None,
            external_ref=event["sg_event_id"],
        )
