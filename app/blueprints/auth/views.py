"""Views: login, logout, switch shop."""

from urllib.parse import urlsplit

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.blueprints.auth import bp
from app.blueprints.auth.forms import LoginForm
from app.blueprints.webhooks import ratelimit
from app.extensions import db
from app.forms import EmptyForm
from app.services.accounts import authenticate, count_failed_sign_in, sign_in_waits
from app.services.audit import record


def _safe_next(target: str | None) -> str:
    """Only follow a local ``next`` path, never another site."""
    if target and not urlsplit(target).netloc and target.startswith("/"):
        return target
    return url_for("customers.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form, or sign the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("customers.index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        minute = int(ratelimit.clock() // 60)  # the rate limits' clock (a test holds it still)
        if sign_in_waits(form.email.data, minute):
            flash("Too many failed sign-ins for this account. Wait a minute and try again.", "error")
            return render_template("auth/login.html", form=form), 429
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            count_failed_sign_in(form.email.data, minute)
        if user is not None:
            login_user(user, remember=form.remember.data)
            session.pop("shop_id", None)
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong email or password.", "error")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    """Sign out and return to the login page."""
    if EmptyForm().validate_on_submit():
        # A copy of this session's cookie (a shared computer, a stolen one) ends with it.
        if current_user.is_authenticated:
            current_user.end_sessions()
            db.session.commit()
        logout_user()
        session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/switch-shop/<int:shop_id>")
@login_required
def switch_shop(shop_id: int):
    """Make another of the user's shops the current one."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    if shop_id not in {m.shop_id for m in g.memberships}:
        abort(404)
    session["shop_id"] = shop_id
    record(shop_id, f"user:{current_user.id}", "switch_shop")
    db.session.commit()
    return redirect(url_for("customers.index"))
