"""No log line the app writes holds an email or phone number: Flask's, werkzeug's, RQ's, gunicorn's
and the root logger's records as well as the app's own, tracebacks included, plain or JSON."""

from __future__ import annotations

import io
import json
import logging
from contextlib import contextmanager

import pytest

from app.extensions import db
from app.logging import HANDLER_NAME, JsonFormatter
from app.models import Profile

EMAIL, PHONE = "jane.doe@example.com", "+44 7700 900123"
PLAIN = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


@contextmanager
def written(logger_name: str, formatter: logging.Formatter | None = None, named: str | None = None):
    """What the handlers a record of ``logger_name`` reaches write (only those ``named``, if given).

    The chain is enabled for the test (a library's logger may be switched off by its own
    configuration); a logger no handler reaches gets one (as gunicorn gives its own loggers theirs).
    """
    buffer, undo = io.StringIO(), []
    logger = logging.getLogger(logger_name)
    chain, node = [], logger
    while node is not None:
        chain.append(node)
        node = node.parent if node.propagate else None
    handlers = [
        h
        for node in chain
        for h in node.handlers
        if isinstance(h, logging.StreamHandler) and named in (None, h.get_name())
    ]
    if not handlers and named is None:
        extra = logging.StreamHandler(buffer)
        logger.addHandler(extra)
        undo.append(lambda: logger.removeHandler(extra))
        handlers = [extra]
    for node in chain:
        disabled = node.disabled
        node.disabled = False
        undo.append(lambda node=node, disabled=disabled: setattr(node, "disabled", disabled))
    for handler in handlers:
        stream, old_formatter = handler.setStream(buffer), handler.formatter
        undo.append(lambda h=handler, s=stream, f=old_formatter: (h.setStream(s), h.setFormatter(f)))
        if formatter is not None:
            handler.setFormatter(formatter)
    level = logger.level
    logger.setLevel(logging.INFO)
    undo.append(lambda: logger.setLevel(level))
    try:
        yield buffer
    finally:
        for step in reversed(undo):
            step()


def test_a_500_whose_message_holds_an_email_logs_it_masked(app, client, auth, shop, monkeypatch):
    """QA's repro: Flask's own "Exception on … [POST]" line and its traceback went out verbatim."""
    from app.blueprints.customers import views

    def broken(profile, timezone):
        raise OSError(36, "File name too long", f"Europe/xxx {EMAIL} {PHONE}")

    monkeypatch.setattr(views, "set_profile_timezone", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    profile = Profile(shop_id=shop.id, first_name="Tz")
    db.session.add(profile)
    db.session.commit()
    auth.login_as(shop)
    with written(app.logger.name) as out:
        response = client.post(f"/customers/{profile.id}/timezone", data={"timezone": "Europe/x"})
    assert response.status_code == 500
    text = out.getvalue()
    assert f"Exception on /customers/{profile.id}/timezone [POST]" in text
    assert "Traceback" in text and "OSError" in text and "[email]" in text and "[phone]" in text
    assert "jane.doe" not in text and "900123" not in text


@pytest.mark.parametrize("name", ["app", "werkzeug", "rq.worker", "gunicorn.error", "gunicorn.access", ""])
@pytest.mark.parametrize("formatter", [PLAIN, JsonFormatter()], ids=["plain", "json"])
def test_every_logger_the_app_runs_under_writes_emails_and_phones_masked_tracebacks_too(app, name, formatter):
    try:
        raise ValueError(f"no profile for {EMAIL}")
    except ValueError:
        with written(name, formatter) as out:
            logging.getLogger(name).error("request from %s failed", PHONE, exc_info=True)
    text = out.getvalue()
    assert "request from [phone] failed" in text and "ValueError: no profile for [email]" in text
    assert "jane.doe" not in text and "900123" not in text
    if isinstance(formatter, JsonFormatter):
        assert json.loads(text.splitlines()[0])["level"] == "ERROR"


@pytest.mark.parametrize("name", ["app", "werkzeug", "rq.worker"])
def test_flask_werkzeug_and_rq_records_come_out_of_the_apps_own_handler(app, name):
    """One handler, so one format: with C360_LOG_JSON, Flask's error lines are JSON like the rest."""
    with written(name, named=HANDLER_NAME) as out:
        logging.getLogger(name).warning("worker %s stopped", 7)
    assert f"{name} worker 7 stopped" in out.getvalue()


def test_running_the_migrations_leaves_the_apps_loggers_on(app):
    """Alembic's fileConfig switched off every logger that existed when migrations ran (the test
    session's, or a process that migrates and goes on): their lines were lost."""
    import logging

    silenced = [
        name
        for name, node in logging.Logger.manager.loggerDict.items()
        if name.startswith("c360") and isinstance(node, logging.Logger) and node.disabled
    ]
    assert silenced == []
