"""Structured logging that never writes personal data.

Every record passes ``PiiScrubber``: email addresses and phone-like
numbers in the message are masked, and extra fields named in
``PERSONAL_KEYS`` are dropped. Lines are JSON in production.
"""

from __future__ import annotations

import json
import logging
import re

from app.models.privacy import PERSONAL_KEYS

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
PHONE_RE = re.compile(r"(?<![\w/.-])\+?\d[\d ()\-]{7,}\d(?![\w/])")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(text: str) -> str:
    """Mask emails and phone numbers in free text."""
    return PHONE_RE.sub("[phone]", EMAIL_RE.sub("[email]", text))


class PiiScrubber(logging.Filter):
    """Mask personal data in the message and drop personal extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = ()
        for key in list(vars(record)):
            # ``name`` is personal as an extra field, but a record's own ``name`` is its logger's.
            if key in PERSONAL_KEYS and key not in _STANDARD:
                delattr(record, key)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the extra fields a record carries."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, (int, float, bool, type(None))) else str(value)
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc)


def init_app(app) -> None:
    """Install the scrubber (always) and the JSON formatter (production or C360_LOG_JSON)."""
    root = logging.getLogger("c360")
    root.setLevel(logging.INFO)
    if not any(isinstance(f, PiiScrubber) for f in root.filters):
        root.addFilter(PiiScrubber())
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.addFilter(PiiScrubber())
        if app.config.get("C360_LOG_JSON"):
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.propagate = False


def get_logger(name: str) -> logging.Logger:
    """A logger under ``c360`` so it gets the scrubber."""
    return logging.getLogger(f"c360.{name}")
