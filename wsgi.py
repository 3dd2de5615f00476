"""WSGI entry point: ``gunicorn wsgi:app``."""

from app import create_app
from workers import embedded

app = create_app()
# Embedded mode (no Redis): the minute sweep runs in a thread of the server.
embedded.start(app)
