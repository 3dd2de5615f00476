"""Typed configuration read from the environment.

One module owns every setting so that the web process, the CLI and the
workers agree. Tests pass their own mapping to ``create_app`` instead of
touching the environment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class ConfigError(RuntimeError):
    """A setting the environment gives that the app cannot start with; said in one line by the CLI."""


def parse_boolean(value: str | None, default: bool = False) -> bool:
    """Read ``1/true/yes/on`` (any case) as True; anything else as False."""
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _positive_number(env, name: str, default: str, kind=int):
    """A positive number from the environment; a clear error at start-up instead of a crash mid-job."""
    raw = env.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def _log_level(name: str) -> str:
    """A logging level's name (``INFO``, ``WARNING``…), refused at start-up when it is none."""
    level = name.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(
            f"C360_WORKER_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {name!r}"
        )
    return level


def _instance_secret(instance_path: Path) -> str:
    """Return the secret key kept in ``instance/secret_key``, creating it once."""
    instance_path.mkdir(parents=True, exist_ok=True)
    key_file = instance_path / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _normalise_database_url(url: str) -> str:
    """Make plain ``postgresql://`` URLs use psycopg 3, the driver we install."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


# Seconds to wait for PostgreSQL to accept a connection: a request that found it away waited
# 130 s before its error, and eight such requests held every web thread.
CONNECT_TIMEOUT_SECONDS = 5


def engine_options(config: dict) -> dict:
    """The engine options for the database the final config names (a caller's config may name
    another than the environment's): PostgreSQL connections give up after a few seconds."""
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if str(config.get("SQLALCHEMY_DATABASE_URI", "")).startswith("postgresql"):
        options.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    return options


def load_config(instance_path: str, environ: dict[str, str] | None = None) -> dict:
    """Build the Flask config mapping from environment variables.

    Args:
        instance_path: the app's instance folder (SQLite file, generated secret).
        environ: the environment to read; ``os.environ`` by default.

    Raises:
        RuntimeError: in production when ``SECRET_KEY`` is missing.
    """
    env = os.environ if environ is None else environ
    instance = Path(instance_path)
    production = env.get("C360_ENV", "development") == "production"

    secret = env.get("SECRET_KEY")
    if not secret:
        if production:
            raise ConfigError("SECRET_KEY must be set when C360_ENV=production")
        secret = _instance_secret(instance)

    database_url = env.get("DATABASE_URL")
    if not database_url:  # the embedded default: a SQLite file in the instance folder, made if new
        instance.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{instance / 'c360.sqlite'}"
    return {
        "SECRET_KEY": secret,
        "C360_ENV": "production" if production else "development",
        "SQLALCHEMY_DATABASE_URI": _normalise_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": env.get("REDIS_URL") or None,
        "C360_QUEUE_PREFIX": env.get("C360_QUEUE_PREFIX", "c360"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "WTF_CSRF_TIME_LIMIT": None,
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "C360_PIXEL_RATE_PER_MINUTE": int(env.get("C360_PIXEL_RATE_PER_MINUTE", "600")),
        "C360_LOG_JSON": parse_boolean(env.get("C360_LOG_JSON"), default=production),
        "C360_WORKER_LOG_LEVEL": _log_level(env.get("C360_WORKER_LOG_LEVEL", "INFO")),
        # The minute sweep's daily enrichment of each shop; off leaves enrichment to cron or a person.
        "C360_DAILY_ENRICHMENT": parse_boolean(env.get("C360_DAILY_ENRICHMENT"), default=True),
        # Ingest tuning: rows per drain batch, seconds a drain runs before handing over,
        # attempts before the dead-letter queue, and the first retry's delay (doubling after).
        "C360_INGEST_BATCH": _positive_number(env, "C360_INGEST_BATCH", "500"),
        "C360_INGEST_DRAIN_SECONDS": _positive_number(env, "C360_INGEST_DRAIN_SECONDS", "60", float),
        "C360_INGEST_MAX_ATTEMPTS": _positive_number(env, "C360_INGEST_MAX_ATTEMPTS", "5"),
        "C360_INGEST_RETRY_BASE_SECONDS": _positive_number(
            env, "C360_INGEST_RETRY_BASE_SECONDS", "30", float
        ),
    }


def provider_settings() -> dict:
    """The messaging providers' settings (Twilio, SendGrid, WhatsApp) for the running app: the
    environment, overridden by the app's config. Every path that sends reads them here, so a send
    made by the API, a worker's job or the sweeper is bound for the same provider."""
    from flask import current_app

    return {**os.environ, **current_app.config}
