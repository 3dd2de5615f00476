"""Sending one message: the gate check and the reservation as one step, and the log.

``send_message`` locks the profile (see ``profile_lock``), reads its
facts, asks the gate, and writes the outcome in the same transaction, so
two workers can never both take a customer's last free slot. Every
attempt writes a ``Message`` row, sent or not. A blocked send depends on
its source:

* ``campaign`` and ``manual``: ``blocked`` — dropped from this send only
  (``retry_at`` still says when the block clears, for the record).
* ``journey``: ``waiting`` with ``retry_at`` (the block's own clearing
  time) and a retry scheduled for then; ``blocked`` when waiting cannot
  help (no consent).
* ``time_sensitive`` (cart recovery): ``missed`` when every window before
  its deadline (default 24 h) is blocked, else ``waiting`` until the first
  open window; the retry sends or records the miss, it never waits again.

Retries: with Redis, ``enqueue_in`` schedules ``workers.messaging.retry_message``
(the worker runs the RQ scheduler). Embedded mode has no scheduler:
``retry_due`` (the sweeper) picks up every waiting message whose time has
come; it is safe to run at any time, since a retried attempt is superseded
by the newer attempt row and never retried twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.logging import get_logger
from app.models import ConsentRecord, ConsentState, Identifier, Message, OutboxItem, Profile, Shop
from app.models.base import utcnow
from app.models.messaging import MESSAGE_SOURCES
from app.services import gate, gate_facts, provider_opt_outs
from app.services.bulk_sql import id_in
from app.services.consent import ADDRESS_KIND, OPTED_IN
from app.services.identifiers import contact_key, live_profile
from app.services.profile_lock import lock_live, lock_profiles
from app.services.transports import provider_for
from app.tenancy import scoped

# How far ahead a waiting journey step looks for the moment every check passes.
JOURNEY_LOOKAHEAD = dt.timedelta(days=8)
TIME_SENSITIVE_WINDOW = dt.timedelta(hours=24)
# How long a provider-bound send may wait for its delivery job before the sweeper queues it again.
DELIVERY_GRACE = dt.timedelta(minutes=2)
# A hand-over this long after the send was written asks the gate about quiet hours again.
LATE_HANDOVER = dt.timedelta(minutes=5)
# What an outbox item's payload says of the send itself, beside the message's own content.
OUTBOX_KEYS = ("source", "campaign_id", "journey_id", "deadline")
# After a day a send is stale: the sweeper marks it failed (provider_unreachable) instead of offering it.
DELIVERY_GIVE_UP = dt.timedelta(days=1)
RECIPIENT_KIND = {**ADDRESS_KIND, "push": "web_client"}  # push goes to a browser

log = get_logger("messaging")


def validate_request(channel: str, source: str) -> None:
    """Raise ``ValidationFailed`` for an unknown channel or source."""
    if channel not in gate.CHANNELS:
        raise ValidationFailed(f"channel must be one of {', '.join(gate.CHANNELS)}", field="channel")
    if source not in MESSAGE_SOURCES:
        raise ValidationFailed(f"source must be one of {', '.join(MESSAGE_SOURCES)}", field="source")


def recipient_for(shop_id: int, profile_id: int, channel: str) -> str | None:
    """The address to send ``channel`` to: the one its opt-in names (``consented_addresses``) when the
    profile holds it, else the oldest email/phone (push: a web client id)."""
    held = list(
        db.session.scalars(
            sa.select(Identifier.value)
            .where(
                Identifier.shop_id == shop_id,
                Identifier.profile_id == profile_id,
                Identifier.kind == RECIPIENT_KIND[channel],
                Identifier.blocked_reason.is_(None),
            )
            .order_by(Identifier.first_seen_at, Identifier.id)
        )
    )
    if not held:
        return f"profile:{profile_id}" if channel == "push" else None
    named = consented_addresses(shop_id, [profile_id], channel).get(profile_id)
    return named if named in held else held[0]


def consented_addresses(shop_id: int, profile_ids: list[int], channel: str) -> dict[int, str]:
    """The address each profile's opt-in for ``channel`` was given for, normalised, where it names one.

    Consent is given for an address: a customer who changed email and subscribed with the new
    one, or who subscribed with her home address and typed her work one in a popup, is mailed
    where she said yes, not at her oldest address.
    """
    kind = RECIPIENT_KIND[channel]
    if kind == "web_client" or not profile_ids:
        return {}
    stmt = (
        sa.select(ConsentState.profile_id, ConsentRecord.identifier)
        .join(ConsentRecord, ConsentRecord.id == ConsentState.record_id)
        .where(
            ConsentState.shop_id == shop_id,
            id_in(ConsentState.profile_id, profile_ids),
            ConsentState.channel == channel,
            ConsentState.status == OPTED_IN,
            ConsentRecord.identifier.is_not(None),
        )
    )
    rows = db.session.execute(stmt).all()
    country = db.session.get(Shop, shop_id).country if rows else None
    named = ((pid, contact_key(text, country)) for pid, text in rows)
    return {pid: key[1] for pid, key in named if key is not None and key[0] == kind}


def no_address(channel: str) -> str:
    """The reason a send the gate allowed was not made: the profile has no address on ``channel``."""
    return f"no_address:{channel}"


def _lock_live(shop: Shop, profile_id: int) -> Profile:
    """Lock the profile and the survivor it was merged into (``profile_lock.lock_live``)."""
    live = lock_live(shop.id, profile_id)
    if live is None:
        raise NotFound(f"profile {profile_id} not found")
    return live


def _blocked(
    source: str,
    decision: gate.GateDecision,
    policy: gate.GatePolicy,
    facts: gate.ProfileFacts,
    channel: str,
    now: dt.datetime,
    deadline: dt.datetime | None,
) -> tuple[str, dt.datetime | None]:
    """``(status, retry_at)`` for a blocked attempt, by source.

    A journey step waits until every check would pass (``gate.next_allowed``), not only the one
    that failed: a text waiting for its cap woke at the customer's midnight, inside quiet hours,
    only to wait again until morning.
    """
    if source == "journey" and decision.retry_at is not None:
        opening = gate.next_allowed(policy, facts, channel, decision.retry_at, now + JOURNEY_LOOKAHEAD)
        return "waiting", opening or decision.retry_at
    if source == "time_sensitive":
        until = deadline or now + TIME_SENSITIVE_WINDOW
        opening = gate.next_allowed(policy, facts, channel, now, until) if until > now else None
        return ("waiting", opening) if opening else ("missed", None)
    # Dropped from this send; the log keeps when the block would have cleared.
    return "blocked", decision.retry_at


def transport_name(channel: str, config: Mapping[str, Any] | None) -> str:
    """The provider a send on ``channel`` is bound for now, or ``outbox`` (the default transport)."""
    provider = provider_for(channel, config) if config is not None else None
    return provider.name if provider else "outbox"


def _record_sent(
    shop: Shop,
    profile: Profile,
    message: Message,
    content: Mapping[str, Any] | None,
    transport: str,
    deadline: dt.datetime | None = None,
) -> None:
    """Hand an allowed send to the outbox, bound for ``transport``; the message row is its only other record.

    No ``<channel>.sent`` event and no ``sent`` counter are written: the
    message log is where the profile's sends are counted and shown (the
    profile's ``engagement.by_channel.*.sent``, the Messages section), and
    a second copy of every send would double the rows a campaign writes.
    """
    recipient = recipient_for(shop.id, profile.id, message.channel)
    if recipient is None:
        # Nothing left for a provider: blocked, as the gate would, and counted towards no cap.
        message.status, message.reason, message.sent_at = "blocked", no_address(message.channel), None
        return
    db.session.flush()
    payload = {"source": message.source, "campaign_id": message.campaign_id, "journey_id": message.journey_id}
    if deadline is not None:  # a time-sensitive send held back at its hand-over still has it
        payload["deadline"] = deadline.isoformat()
    payload.update(content or {})
    db.session.add(
        OutboxItem(
            shop_id=shop.id,
            message_id=message.id,
            channel=message.channel,
            transport=transport,
            recipient=recipient,
            payload=payload,
        )
    )


def send_message(
    shop: Shop,
    profile_id: int,
    channel: str,
    source: str,
    campaign_id: str | None = None,
    journey_id: str | None = None,
    now: dt.datetime | None = None,
    *,
    deadline: dt.datetime | None = None,
    content: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    retry_of: int | None = None,
) -> Message:
    """Gate and, when allowed, send one message; commit; return its log row.

    Args:
        deadline: for ``time_sensitive`` sends, the last useful moment.
        content: subject/text/template handed to the transport; a message that waits keeps it
            for its retry.
        retry_of: the waiting message this attempt retries.
        config: provider settings; with a provider for the channel the outbox
            item is delivered by a job after commit.

    Raises:
        ValidationFailed: an unknown channel or source, or a naive ``now``.
        NotFound: the profile is not this shop's.
    """
    validate_request(channel, source)
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValidationFailed("now must be timezone-aware", field="at")
    if source == "time_sensitive":
        deadline = deadline or now + TIME_SENSITIVE_WINDOW
    transport = transport_name(channel, config)
    profile = _lock_live(shop, profile_id)
    policy = gate_facts.load_policy(shop)
    facts = gate_facts.load_facts(shop, [profile.id], now, channels=[channel], policy=policy)[profile.id]
    decision = gate.decide(policy, facts, channel, now)
    message = Message(
        shop_id=shop.id,
        profile_id=profile.id,
        channel=channel,
        source=source,
        campaign_id=campaign_id,
        journey_id=journey_id,
        reason=decision.reason,
        created_at=now,
        local_day=now.astimezone(facts.zone.primary).date(),
        retry_of_id=retry_of,
    )
    if retry_of is not None:
        _mark_retried(shop.id, retry_of)
    db.session.add(message)
    if decision.allowed:
        message.status, message.sent_at = "sent", now
        _record_sent(shop, profile, message, content, transport, deadline)
    else:
        message.status, message.retry_at = _blocked(source, decision, policy, facts, channel, now, deadline)
        if message.status == "waiting" and content:
            message.content = dict(content)
    db.session.commit()
    _after_commit(message, transport)
    return message


def _mark_retried(shop_id: int, message_id: int) -> None:
    """The waiting message's next attempt is made: it waits no more, so no sweep looks at it again
    and the log shows it as ``retried`` (the attempt names it), not as waiting for ever."""
    db.session.execute(
        sa.update(Message)
        .where(Message.shop_id == shop_id, Message.id == message_id, Message.status == "waiting")
        .values(status="retried")
        .execution_options(synchronize_session="fetch")
    )


def _after_commit(message: Message, transport: str) -> None:
    """Queue what follows a committed send: its retry, or its hand-over to the provider.

    The send stands once committed, so a queue that cannot be reached (Redis away) is logged,
    not raised: the minute sweep retries due messages and re-queues hand-overs no job took,
    where a 500 made the client send again (and the customer get it twice).
    """
    from app import jobs

    try:
        if message.status == "waiting" and message.retry_at is not None:
            delay = max(0.0, (message.retry_at - utcnow()).total_seconds())
            jobs.get_queue().enqueue_in(delay, "workers.messaging.retry_message", message.id)
        if message.status == "sent" and transport != "outbox":
            enqueue_delivery(message.id)
    except Exception:
        log.warning("message %s committed but not queued; the sweep will", message.id, exc_info=True)


def enqueue_delivery(message_id: int, *suffix: object) -> None:
    """Queue the hand-over of one sent message to its provider (a repeat of one job id is a no-op)."""
    from app import jobs

    job_id = jobs.safe_job_id("deliver", message_id, *suffix)
    jobs.enqueue("workers.messaging.deliver_message", message_id, job_id=job_id)


def _undelivered(shop_id: int | None) -> sa.Select:
    """Provider-bound sends still without a provider id (``OutboxItem.transport`` names the provider)."""
    stmt = (
        sa.select(Message.id)
        .join(OutboxItem, sa.and_(OutboxItem.shop_id == Message.shop_id, OutboxItem.message_id == Message.id))
        .where(
            OutboxItem.transport != "outbox",
            Message.status == "sent",
            Message.provider_message_id.is_(None),
        )
    )
    return stmt if shop_id is None else stmt.where(Message.shop_id == shop_id)


def deliver_due(
    now: dt.datetime | None = None, shop_id: int | None = None, *, grace: dt.timedelta = DELIVERY_GRACE
) -> int:
    """The delivery sweeper: re-queue provider-bound sends whose hand-over never happened; return how many.

    A send is committed before its delivery job is queued, so a worker or
    Redis dying in between leaves it in the outbox unsent, and a provider
    that was down fails its job. Anything bound for a provider, still
    without a provider id, older than ``grace`` and younger than a day is
    queued again, once per minute at most (the job id names the minute);
    ``deliver_message`` locks the message and skips one that has its
    provider id, so none goes twice. A send still undelivered after a day
    is stale: it becomes ``failed`` (``provider_unreachable``), which the
    Messages screen shows and which no longer counts towards fatigue.
    """
    now = now or utcnow()
    minute = int(now.timestamp() // 60)
    stale = _undelivered(shop_id).where(Message.created_at <= now - DELIVERY_GIVE_UP)
    db.session.execute(
        sa.update(Message)
        .where(Message.id.in_(stale.scalar_subquery()))
        .values(status="failed", reason="provider_unreachable", sent_at=None),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    due = _undelivered(shop_id).where(
        Message.created_at < now - grace, Message.created_at > now - DELIVERY_GIVE_UP
    )
    ids = list(db.session.scalars(due.order_by(Message.id)))
    db.session.rollback()  # read-only: end the transaction before the jobs (inline ones) lock rows
    for message_id in ids:
        enqueue_delivery(message_id, "sweep", minute)
    return len(ids)


def _superseded(message: Message) -> bool:
    """Whether the waiting message was retried already: an attempt names it (``retry_of_id``).

    Attempts made before retries named their message are found as before: a newer message of
    the same journey (or campaign) on the same profile and channel, made once the wait was
    over (a retry happens at ``retry_at``). A newer one made while this one still waited is
    another step of the journey: taken for this one's retry, the first step was never sent.
    Two time-sensitive messages without such ids are two messages, each retried.
    """
    retried = sa.select(Message.id).where(
        Message.shop_id == message.shop_id, Message.retry_of_id == message.id
    )
    if db.session.scalar(retried.limit(1)) is not None:
        return True
    if (message.journey_id is None and message.campaign_id is None) or message.retry_at is None:
        return False
    newer = sa.select(Message.id).where(
        Message.shop_id == message.shop_id,
        Message.profile_id == message.profile_id,
        Message.channel == message.channel,
        Message.source == message.source,
        Message.journey_id.is_not_distinct_from(message.journey_id),
        Message.campaign_id.is_not_distinct_from(message.campaign_id),
        Message.id > message.id,
        Message.created_at >= message.retry_at,
        Message.retry_of_id.is_(None),
    )
    return db.session.scalar(newer.limit(1)) is not None


def retry_message(
    message_id: int, now: dt.datetime | None = None, config: Mapping[str, Any] | None = None
) -> Message | None:
    """Make the next attempt of a waiting message (idempotent: a superseded one is skipped).

    ``config`` is the provider settings, as for ``send_message``: without them the attempt
    is bound for the outbox alone, and a provider would never get it.
    """
    waiting = db.session.get(Message, message_id)
    if waiting is None or waiting.status != "waiting":
        return None
    # Under the profile lock, so the scheduler and the sweeper never both retry one message.
    lock_profiles(waiting.shop_id, [waiting.profile_id])
    if _superseded(waiting):  # retried before retries marked their message (or by a sweep beside us)
        _mark_retried(waiting.shop_id, waiting.id)
        db.session.commit()
        return None
    # A scheduler firing a little early is harmless: the attempt simply waits again.
    now = now or utcnow()
    shop = db.session.get(Shop, waiting.shop_id)
    return send_message(
        shop,
        waiting.profile_id,
        waiting.channel,
        waiting.source,
        campaign_id=waiting.campaign_id,
        journey_id=waiting.journey_id,
        now=now,
        deadline=now,  # a time-sensitive retry sends now or records the miss
        content=waiting.content,
        config=config,
        retry_of=waiting.id,
    )


def retry_due(
    now: dt.datetime | None = None, shop_id: int | None = None, config: Mapping[str, Any] | None = None
) -> int:
    """The sweeper: retry every waiting message whose time has come (with the provider settings
    ``config``); return how many."""
    now = now or utcnow()
    stmt = sa.select(Message.id).where(Message.status == "waiting", Message.retry_at <= now)
    if shop_id is not None:
        stmt = stmt.where(Message.shop_id == shop_id)
    done = 0
    for message_id in list(db.session.scalars(stmt.order_by(Message.id))):
        done += retry_message(message_id, now, config) is not None
    return done


def deliver_message(message_id: int, config: Mapping[str, Any], now: dt.datetime | None = None) -> str | None:
    """Hand a sent message's outbox item to the channel's provider; store its id.

    Before it leaves, the gate is asked once more (``gate.at_hand_over``): a customer
    who texted STOP or unsubscribed since the verdict is not messaged, and a hand-over
    more than ``LATE_HANDOVER`` after the send was written (a provider outage, a lost
    job) is not made in quiet hours. Such a send is handled as a block of its source
    (a campaign's is dropped, a journey's waits), and no longer counts.

    A provider that refuses the message for good (a 4xx) marks it ``failed``
    with the reason, so it no longer counts against the caps; a retryable
    error propagates for the job queue to record (the sweeper tries again).
    The message row is locked while it is handed over, so a swept job and
    the original one never both send it.
    """
    from app.services.transports import Outbound, TransportError

    message = db.session.get(Message, message_id, with_for_update=True)
    if message is None or message.status != "sent" or message.provider_message_id:
        return None
    transport = provider_for(message.channel, config)
    item = db.session.get(OutboxItem, (message.shop_id, message.id))
    if transport is None or item is None:
        return None
    if _held_back(message, item, now or utcnow()):
        return None
    try:
        status_url = _status_url(config, transport.name, message.shop_id)
        outbound = Outbound(message.id, message.channel, item.recipient, item.payload, status_url)
        provider_id = transport.send(outbound)
    except TransportError as exc:
        if exc.retryable:
            raise
        message.status, message.reason = "failed", f"provider_rejected:{exc.status or 'invalid'}"
        if exc.opted_out:  # the customer told the provider to stop: so it reads on their profile
            message.reason = "provider_opted_out"
            _record_provider_opt_out(message, transport.name, item.recipient, now or utcnow())
        db.session.commit()
        return None
    message.provider_message_id = provider_id
    db.session.commit()
    return provider_id


def _record_provider_opt_out(message: Message, provider: str, recipient: str, at: dt.datetime) -> None:
    """The provider refused the send because the recipient opted out with it: record that opt-out."""
    profile = live_profile(db.session.get(Profile, message.profile_id))
    if profile is not None:
        provider_opt_outs.record_opt_out(
            profile,
            message.channel,
            provider=provider,
            at=at,
            external_ref=f"message:{message.id}",
            identifier=recipient,
        )


def _status_url(config: Mapping[str, Any], provider: str, shop_id: int) -> str | None:
    """Our webhook for a provider's delivery statuses of a shop's sends, if the public address is set."""
    base = str(config.get("C360_PUBLIC_URL") or "").rstrip("/")
    return f"{base}/webhooks/{provider}/{db.session.get(Shop, shop_id).domain}" if base else None


def _held_back(message: Message, item: OutboxItem, now: dt.datetime) -> bool:
    """Ask the gate again before a hand-over; when it says no, record the block and commit."""
    shop = db.session.get(Shop, message.shop_id)
    profile = live_profile(db.session.get(Profile, message.profile_id))
    policy = gate_facts.load_policy(shop)
    facts = gate_facts.load_facts(shop, [profile.id], now, channels=[message.channel], policy=policy)[
        profile.id
    ]
    late = now - item.created_at > LATE_HANDOVER
    decision = gate.at_hand_over(policy, facts, message.channel, now, late=late)
    if decision.allowed:
        return False
    # Held back, it no longer counts: when it may go again is judged without it (it used up
    # its own cap, and a journey's text lost a day), and by its own deadline.
    message.status, message.sent_at = "blocked", None
    db.session.flush()
    facts = gate_facts.load_facts(shop, [profile.id], now, channels=[message.channel], policy=policy)[
        profile.id
    ]
    deadline = _deadline_of(item)
    status, retry_at = _blocked(message.source, decision, policy, facts, message.channel, now, deadline)
    message.status, message.reason, message.retry_at, message.sent_at = (
        status,
        decision.reason,
        retry_at,
        None,
    )
    if status == "waiting":  # what it says goes with it to its retry, as for a send that waited at once
        message.content = {k: v for k, v in item.payload.items() if k not in OUTBOX_KEYS} or None
    db.session.commit()
    _after_commit(message, "outbox")  # a journey's message waits for its retry
    return True


def _deadline_of(item: OutboxItem) -> dt.datetime | None:
    """A time-sensitive send's deadline, as its outbox item carries it (None for other sends)."""
    try:
        return dt.datetime.fromisoformat(item.payload["deadline"])
    except (KeyError, TypeError, ValueError):
        return None


def messaging_section(shop: Shop, profile: Profile, now: dt.datetime | None = None) -> dict[str, Any]:
    """The profile document's ``messaging`` key: what this customer has heard from you."""
    now = now or utcnow()
    facts = gate_facts.load_facts(shop, [profile.id], now).get(profile.id)
    counts = gate.messaging_counts(facts, now) if facts else {}
    last = db.session.execute(
        sa.select(Message.channel, sa.func.max(Message.created_at))
        .where(Message.shop_id == shop.id, Message.profile_id == profile.id, Message.status == "sent")
        .group_by(Message.channel)
    )
    last_at: dict[str, dt.datetime | None] = dict.fromkeys(gate.CHANNELS)
    last_at.update(dict(last.all()))
    week = counts.get("last_7d_count", 0)
    return {
        "messaging": {
            "today_count": counts.get("today_count", 0),
            "today_by_channel": counts.get("today_by_channel", dict.fromkeys(gate.CHANNELS, 0)),
            "last_7d_count": week,
            "fatigue": gate.fatigue_of(week),
            "last_contact_at": {c: (t.isoformat() if t else None) for c, t in last_at.items()},
            # Where the time zone chain ended: the zone(s) quiet hours obey, and which step decided.
            "quiet_hours_zones": list(facts.zone.zones) if facts else [],
            "timezone_source": facts.zone.source if facts else None,
        }
    }


def message_log(shop_id: int, **filters: str | None) -> sa.Select:
    """The shop's message log, newest first, filtered by reason/channel/campaign/status."""
    stmt = sa.select(Message).where(Message.shop_id == shop_id)
    if filters.get("reason"):
        reason = filters["reason"]
        stmt = stmt.where(sa.or_(Message.reason == reason, Message.reason.startswith(f"{reason}:")))
    for key in ("channel", "campaign_id", "status", "source"):
        if filters.get(key):
            stmt = stmt.where(getattr(Message, key) == filters[key])
    return stmt.order_by(Message.created_at.desc(), Message.id.desc())


def customer_names(shop_id: int, profile_ids: set[int]) -> dict[int, str]:
    """The names of the log's customers who have one, by profile id (one read for a page)."""
    if not profile_ids:
        return {}
    profiles = db.session.scalars(
        scoped(Profile, shop_id)
        .where(Profile.id.in_(sorted(profile_ids)))
        .options(so.load_only(Profile.first_name, Profile.last_name))
    )
    return {p.id: p.name for p in profiles if p.name}


def sweep_messages(config: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The messages' part of the minute sweep (``workers.ingest.sweep_once``), with its counts.

    Waiting journey and time-sensitive messages whose time has come are retried,
    provider hand-overs that never happened and campaign chunks left pending are
    queued again. ``c360 messages retry-due`` runs it on demand. ``config``: the provider
    settings the retried messages are bound by (``app.config.provider_settings``).
    """
    from app.services import campaign_sends

    return {
        "retried": retry_due(config=config),
        "handed_over": deliver_due(),
        "chunks": campaign_sends.requeue_stale(),
    }
