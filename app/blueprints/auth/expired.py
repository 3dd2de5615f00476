"""A console form posted with an expired or missing CSRF token: say so, and lead back.

CSRFProtect refuses such a post before any view runs, and Werkzeug's bare "400 Bad Request"
page answered: no form, no way back, and the sign-in page's own "The form expired" could
never show. The post still changes nothing (400); the answer now tells the person why and
how to go on: the sign-in form again with what they typed, a banner for an HTMX request,
else a page with a link back to where they were.
"""

from __future__ import annotations

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from markupsafe import escape

from app.blueprints.auth import bp
from app.blueprints.auth.forms import LoginForm
from app.web import back_link

MESSAGE = (
    "The form expired: the page was open a long time, or you signed out in another tab. "
    "Nothing was changed. Please try again."
)


@bp.app_errorhandler(CSRFError)
def form_expired(_exc: CSRFError):
    """The refused post's answer, by where it came from."""
    if request.endpoint == "auth.login":
        form = LoginForm(formdata=None, email=request.form.get("email", ""))
        return render_template("auth/login.html", form=form, expired=True), 400
    if request.headers.get("HX-Request"):
        return f"<p>{escape(MESSAGE)}</p>", 400
    return render_template("errors/form_expired.html", message=MESSAGE, back=back_link()), 400
