"""Console request context: which shop the signed-in user is looking at.

The console keeps the chosen shop in the session; it is honoured only
while the user holds a membership in it, so a forged or stale session
can never reach another shop.
"""

from __future__ import annotations

import zoneinfo
from functools import wraps
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import abort, g, render_template, request, session, url_for
from flask_login import current_user, login_required
from markupsafe import Markup, escape

from app.digits import counted
from app.extensions import db
from app.models import Membership, Shop
from app.services import gate
from app.services.identifiers import contact_key
from app.services.shop_settings import shop_timezone
from app.services.timezones import zone_or_utc

ROLE_RANK = {"support": 0, "staff": 1, "agency": 2, "owner": 3}
# The shop a page was drawn for, sent back with every request it makes (HTMX header, form field):
# the chosen shop is the session's, shared by every tab, so a tab left open on shop A whose user
# switched to shop B in another tab saved A's settings form into B.
SHOWN_HEADER, SHOWN_FIELD = "X-C360-Shop", "c360_shop"


def memberships_of(user) -> list[Membership]:
    """The user's memberships, shops in domain order."""
    stmt = (
        sa.select(Membership)
        .join(Shop, Shop.id == Membership.shop_id)
        .where(Membership.user_id == user.id)
        .order_by(Shop.domain)
    )
    return list(db.session.scalars(stmt))


def load_current_shop() -> None:
    """Set ``g.shop`` and ``g.role`` from the session for a signed-in user."""
    g.shop = None
    g.role = None
    if not current_user.is_authenticated:
        return
    memberships = memberships_of(current_user)
    chosen = session.get("shop_id")
    membership = next((m for m in memberships if m.shop_id == chosen), None)
    if membership is None and memberships:
        membership = memberships[0]
        session["shop_id"] = membership.shop_id
    if membership is not None:
        g.shop = membership.shop
        g.role = membership.role
    g.memberships = memberships


def shop_required(min_role: str = "support"):
    """Require login, a current shop and at least ``min_role`` in it."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if g.get("shop") is None:
                abort(403)
            if ROLE_RANK[g.role] < ROLE_RANK[min_role]:
                abort(403)
            if _drawn_for_another_shop():
                return _another_shops_page()
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _drawn_for_another_shop() -> bool:
    """Whether the request comes from a page drawn for a shop other than the current one."""
    shown = request.headers.get(SHOWN_HEADER)
    if shown is None and request.method != "GET":
        shown = request.form.get(SHOWN_FIELD)
    return shown is not None and shown != str(g.shop.id)


def _another_shops_page():
    """Refuse, changing nothing (409): a banner for an HTMX request, else a page leading back.

    An HTMX answer is 412, which the console shows as a banner and swaps into nothing: the
    page stays as it was drawn, the reason above it.
    """
    message = (
        f"This page was opened for another shop; since then this browser switched to {g.shop.domain}. "
        "Nothing was changed. Reload the page to work on this shop, or switch back first."
    )
    if request.headers.get("HX-Request"):
        return f"<p>{escape(message)}</p>", 412
    return render_template(
        "errors/refused.html", title="Another shop's page", message=message, back=back_link()
    ), 409


def back_link() -> str:
    """The page a refused request came from (a path of this site), else the customer list."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path.startswith("/"):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return url_for("customers.index")


def form_guard() -> Markup:
    """The hidden fields every console form carries: its CSRF token and the shop it was drawn for."""
    from flask_wtf.csrf import generate_csrf

    fields = Markup('<input type="hidden" name="csrf_token" value="{}">').format(generate_csrf())
    if g.get("shop") is not None:
        fields += Markup('<input type="hidden" name="{}" value="{}">').format(SHOWN_FIELD, g.shop.id)
    return fields


NAV = (
    ("dashboard.index", "Dashboard", "support"),
    ("customers.index", "Customers", "support"),
    ("duplicates.index", "Duplicates", "support"),
    ("segments.index", "Segments", "staff"),
    ("messages.index", "Messages", "support"),
    ("deliveries.index", "Failed deliveries", "support"),
    ("gdpr.index", "GDPR", "owner"),
    ("settings.index", "Settings", "staff"),
    ("agency.index", "Agency", "agency"),
)


def nav_items() -> list[tuple[str, str]]:
    """The screens this app has and the current user's role may open."""
    from flask import current_app

    role_rank = ROLE_RANK.get(g.get("role") or "support", 0)
    items = []
    for endpoint, label, min_role in NAV:
        if endpoint not in current_app.view_functions:
            continue
        if min_role == "agency":
            from app.services.agency import can_view_rollup

            if not can_view_rollup(g.get("memberships") or []):
                continue
            items.append((endpoint, label))
            continue
        if min_role != "agency" and role_rank < ROLE_RANK[min_role]:
            continue
        items.append((endpoint, label))
    return items


def shop_zone() -> zoneinfo.ZoneInfo:
    """The current shop's time zone, which screens about the shop (not one customer) show times in."""
    shop = g.get("shop")
    return zone_or_utc(shop_timezone(shop) if shop is not None else None)


def may(min_role: str) -> bool:
    """Whether the signed-in user's role in the current shop reaches ``min_role``: a template
    offers an action only to those whose request would be taken (``shop_required``)."""
    role = g.get("role")
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[min_role]


def identifier_text(key: str) -> str:
    """An identifier key as evidence shows it: ``web_client:c-1`` reads ``web client c-1``."""
    kind, _, value = str(key).partition(":")
    return f"{kind.replace('_', ' ')} {value}" if value else kind


def contact_text(text: str | None) -> str:
    """A consent's address as the console shows it: normalised (``email:Eve@Mail.uk`` reads
    ``eve@mail.uk``, a national phone its E.164), else as it was given."""
    shop = g.get("shop")
    key = contact_key(text, shop.country if shop is not None else None)
    return key[1] if key else str(text or "")


def init_app(app) -> None:
    """Expose ``nav_items`` to templates and load the current shop per request."""
    app.context_processor(
        lambda: {"nav_items": nav_items, "may": may, "shop_zone": shop_zone(), "form_guard": form_guard}
    )
    app.add_template_filter(counted)
    app.add_template_filter(identifier_text)
    app.add_template_filter(contact_text, "contact")
    app.add_template_filter(gate.describe, "gate_reason")
    from app.services.duplicates_review import why

    app.add_template_filter(why, "merge_reason")  # a merge's reason in words
    app.before_request(load_current_shop)
