"""One clear line instead of a traceback when the database or Redis is not there.

Every ``c360`` command (ours, Flask-Migrate's ``db``, the blueprints') runs through
``C360Group.invoke``, so the three ways a fresh or misconfigured install fails are
told apart in one place: a database that was never migrated, a database that cannot
be opened or reached, and a Redis nobody answers on. Any other error keeps its
traceback: it is a bug to report, not a setting to fix.

A driver's message can quote the connection string, and a failed statement quotes
its parameters (emails, names): the line we print names the host, port and database
only, and the driver's reason for a failed connection with any password taken out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import FlaskGroup, ScriptInfo

from app.extensions import db

NOT_MIGRATED = "the database has no tables yet: run `c360 db upgrade`"
BEHIND = "the database schema is older than this version of Customer 360: run `c360 db upgrade`"
MISSING_TABLE = ("no such table", "42P01")  # SQLite's message, PostgreSQL's SQLSTATE
MISSING_COLUMN = ("no such column", "has no column named", "42703")
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
PG_PREFIX = re.compile(r'^(connection failed: )?(connection to server at "[^"]*"(, port \d+)? failed: )?')


class C360Group(FlaskGroup):
    """The ``c360`` group: turns an unmigrated or unreachable database or Redis into one line."""

    def invoke(self, ctx: click.Context):
        """Run the command; explain an infrastructure failure as a ``ClickException`` (exit 1)."""
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            message = explain(exc, ctx.ensure_object(ScriptInfo).load_app)
            if message is None:
                raise
            raise click.ClickException(message) from None


def explain(exc: BaseException, load_app: Callable[[], Flask]) -> str | None:
    """The line to print for ``exc`` (or an error it was raised from), or None to keep the traceback.

    The app is loaded (it was, for the command to fail this way) only once a database or
    Redis error is found: an app that failed to load fails again, and keeps its own traceback.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    from app.config import ConfigError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConfigError):
            return str(exc)
        if isinstance(exc, sa.exc.DBAPIError):
            with load_app().app_context():
                return _database_message(exc)
        if isinstance(exc, RedisConnectionError | RedisTimeout):
            return _redis_message(exc, load_app().config.get("REDIS_URL") or "")
        exc = exc.__cause__ or exc.__context__
    return None


def _database_message(exc: sa.exc.DBAPIError) -> str | None:
    db.session.rollback()
    if _says(exc, MISSING_TABLE):
        return BEHIND if _has_table("alembic_version") else NOT_MIGRATED
    if _says(exc, MISSING_COLUMN):
        return BEHIND
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return None
    # An operational error is many things (a lock, a timeout): only a fresh connection that
    # fails too says the database cannot be reached, and its error says why.
    reason = _connect_error()
    if reason is None:
        return None
    return f"cannot reach the database at {_where(db.engine.url)}: {reason}"


def _says(exc: sa.exc.DBAPIError, markers: tuple[str, ...]) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    text = str(exc.orig).lower()
    return code in markers or any(marker in text for marker in markers)


def _has_table(name: str) -> bool:
    try:
        return sa.inspect(db.engine).has_table(name)
    except sa.exc.DBAPIError:
        return False


def _connect_error() -> str | None:
    """Why a new connection fails (password taken out), or None when it succeeds."""
    db.engine.dispose()
    try:
        with db.engine.connect():
            return None
    except sa.exc.DBAPIError as exc:
        url = db.engine.url
        reason = PG_PREFIX.sub("", _first_line(exc.orig), count=1)
        if url.get_backend_name() == "sqlite" and url.database and not _directory_exists(url.database):
            reason += f" (the directory {os.path.dirname(url.database)} does not exist)"
        return _scrub(reason, url.password)


def _where(url: sa.engine.URL) -> str:
    """Host, port and database of ``url``, never its user's password; a SQLite URL's file."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.database or ":memory:"
    port = url.port or DEFAULT_PORTS.get(backend, "")
    return f"{url.host or 'localhost'}:{port}/{url.database or ''}"


def _redis_message(exc: BaseException, redis_url: str) -> str:
    url = urlsplit(redis_url)
    if url.scheme == "unix":
        where = url.path
    else:
        where = f"{url.hostname or 'localhost'}:{url.port or 6379}/{url.path.strip('/') or 0}"
    return f"cannot reach Redis at {where}: {_scrub(_first_line(exc), url.password)}"


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip().splitlines()
    return " ".join(text[0].split())[:200] if text else type(exc).__name__


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def _directory_exists(path: str) -> bool:
    return os.path.isdir(os.path.dirname(os.path.abspath(path)))
