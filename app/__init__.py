"""Customer 360: the application factory.

``create_app`` is a list of ``init_app`` calls, one per subsystem, so a
newcomer can read what the app is made of in one screen.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path

from flask import Flask

from app import gc_tuning, htmx, jobs, request_guard
from app import logging as c360_logging
from app.config import engine_options, load_config
from app.extensions import csrf, db, init_db, login_manager, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BLUEPRINTS = (
    "auth",
    "dashboard",
    "customers",
    "settings",
    "duplicates",
    "messages",
    "agency",
    "api",
    "webhooks",
    "deliveries",
)


def create_app(config: dict | None = None) -> Flask:
    """Build the app from the environment, then apply ``config`` on top (tests)."""
    instance_path = os.environ.get("C360_INSTANCE_PATH") or str(PROJECT_ROOT / "instance")
    app = Flask(__name__, instance_path=instance_path)
    app.config.from_mapping(load_config(instance_path))
    if config:
        app.config.from_mapping(config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)

    c360_logging.init_app(app)
    init_db(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    request_guard.init_app(app)
    htmx.init_app(app)
    jobs.init_app(app)
    _init_login(app)

    from app import models  # noqa: F401  (registers every table with the metadata)
    from app.tenancy import RowIdConverter

    app.url_map.converters["int"] = RowIdConverter  # before any route is added

    for name in BLUEPRINTS:
        module = import_module(f"app.blueprints.{name}")
        module.init_app(app) if hasattr(module, "init_app") else app.register_blueprint(module.bp)

    from app.cli import register_commands

    register_commands(app)
    gc_tuning.tune()
    gc_tuning.freeze_startup_objects()
    return app


def _init_login(app: Flask) -> None:
    from app import web
    from app.digits import whole_number
    from app.models import User

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."

    @login_manager.user_loader
    def load_user(session_id: str):
        """The user a session names, if it was made since their last sign-out or new password."""
        user_id, _, generation = session_id.partition(":")
        number, made = whole_number(user_id), whole_number(generation)
        user = db.session.get(User, number) if number is not None and made is not None else None
        return user if user is not None and user.session_generation == made else None

    web.init_app(app)
