"""Structured logging that never writes personal data.

Every record this process makes is scrubbed as it is made (``scrub_record``, installed as the
record factory): email addresses and phone-like numbers in its message and in its exception's
traceback are masked, whichever logger made it (ours, Flask's "Exception on … [POST]", werkzeug's
request lines, RQ's, gunicorn's) and whichever handler writes it. Extra fields named in
``PERSONAL_KEYS`` are dropped by ``PiiScrubber``. Lines are JSON in production.
"""

from __future__ import annotations

import json
import logging
import re

from app.models.privacy import PERSONAL_KEYS

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# A run of digits that may be a phone number (``_phone_or_not`` decides): digits, spaces, dashes and
# brackets, not part of a word, a path, a version or a time of day (``12:00``).
PHONE_RE = re.compile(r"(?<![\w/.:-])\+?\d[\d ()\-]{6,}\d(?![\w/:])")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
HANDLER_NAME = "c360"
# Loggers of the libraries the app runs under that write to the app's own handler (one format).
LIBRARY_LOGGERS = ("werkzeug", "rq")
_TRACEBACKS = logging.Formatter()


def scrub(text: str) -> str:
    """Mask emails and phone numbers in free text."""
    return PHONE_RE.sub(_phone_or_not, EMAIL_RE.sub("[email]", text))


def _phone_or_not(match: re.Match) -> str:
    """``[phone]`` for a number written as phones are, else the text as it was.

    A phone has 8 to 15 digits after a ``+`` (E.164), 10 to 15 when written with spaces, dashes
    or brackets (``07700 900123``, ``(415) 555-2671``), and 10 to 12 as bare digits (national, or
    international without its ``+``). A status and a size (``200 12345``), a date, and a Shopify
    id of 13 bare digits are not phones: masked, the lines that debug a webhook lost them.
    """
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    if text.startswith("+"):
        phone = 8 <= digits <= 15
    elif text.isdigit():
        phone = 10 <= digits <= 12
    else:
        phone = 10 <= digits <= 15 and not DATE_RE.match(text)
    return "[phone]" if phone else text


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask personal data in a record's message, traceback and stack text; returns the record.

    The text is scrubbed rather than the formatted line: a formatter's timestamp
    (``2026-01-31 12:00:00``) reads as a phone number. The traceback is formatted here, once,
    into ``exc_text``, which every ``logging.Formatter`` prints instead of formatting it again.
    """
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the handler's to report, not the caller's
        return record
    record.msg, record.args = scrub(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = _TRACEBACKS.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


def _scrubbing_factory(make_record):
    def factory(*args, **kwargs):
        return scrub_record(make_record(*args, **kwargs))

    factory.scrubs = True
    return factory


class PiiScrubber(logging.Filter):
    """Mask personal data in the message and drop personal extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
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
                doc[key] = value if isinstance(value, (int, float, bool, type(None))) else scrub(str(value))
        if record.exc_info or record.exc_text:
            doc["exc"] = scrub(record.exc_text or self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = scrub(record.stack_info)
        return json.dumps(doc)


def _handler(app) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.set_name(HANDLER_NAME)
    handler.addFilter(PiiScrubber())
    if app.config.get("C360_LOG_JSON"):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    return handler


def init_app(app) -> None:
    """Scrub every record of the process, and give the app's, Flask's and the libraries' loggers
    one handler (JSON in production or with C360_LOG_JSON)."""
    from flask.logging import default_handler

    if not getattr(logging.getLogRecordFactory(), "scrubs", False):
        logging.setLogRecordFactory(_scrubbing_factory(logging.getLogRecordFactory()))
    ours = logging.getLogger("c360")
    ours.setLevel(logging.INFO)
    if not any(isinstance(f, PiiScrubber) for f in ours.filters):
        ours.addFilter(PiiScrubber())
    handler = next((h for h in ours.handlers if h.get_name() == HANDLER_NAME), None) or _handler(app)
    # Flask's logger first: with a handler of its own, ``app.logger`` adds no default handler.
    for name in ("c360", app.name, *LIBRARY_LOGGERS):
        logger = logging.getLogger(name)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False  # a root handler (alembic's fileConfig) would write it twice
    app.logger.removeHandler(default_handler)


def get_logger(name: str) -> logging.Logger:
    """A logger under ``c360`` so it gets the scrubber."""
    return logging.getLogger(f"c360.{name}")
