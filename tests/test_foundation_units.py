"""Plans, logging scrubber, config and the job queue interface."""

import datetime as dt
import json
import logging

import pytest

from app.config import load_config
from app.jobs import InProcessQueue, safe_job_id
from app.logging import JsonFormatter, PiiScrubber, scrub
from app.plans import PLANS, get_plan, has_capability


@pytest.mark.parametrize(
    "plan, window",
    [
        ("free", dt.timedelta(hours=24)),
        ("starter", dt.timedelta(days=7)),
        ("pro", dt.timedelta(days=7)),
        ("agency", dt.timedelta(days=30)),
        ("enterprise", dt.timedelta(days=90)),
    ],
)
def test_merge_undo_window_follows_the_plan(plan, window):
    assert get_plan(plan).merge_undo_window == window


def test_capabilities_grow_with_the_plan():
    assert not has_capability("starter", "predictions") and has_capability("pro", "predictions")
    assert has_capability("starter", "regional_quiet_hours") and not has_capability(
        "free", "regional_quiet_hours"
    )
    assert all(PLANS["enterprise"].capabilities >= p.capabilities for p in PLANS.values())


def test_asking_for_an_unknown_capability_is_an_error():
    with pytest.raises(ValueError):
        has_capability("pro", "time_travel")


def test_scrub_masks_emails_and_phone_numbers():
    text = scrub("profile 42 sarah.j.home@gmail.com +44 7700 900123 order 1001")
    assert "gmail" not in text and "7700" not in text
    assert "profile 42" in text and "order 1001" in text


def test_log_records_lose_personal_extra_fields(caplog):
    logger = logging.getLogger("c360.test")
    record = logger.makeRecord(
        "c360.test",
        logging.INFO,
        __file__,
        1,
        "hi %s",
        ("a@b.co",),
        None,
        extra={"email": "a@b.co", "profile_id": 7},
    )
    PiiScrubber().filter(record)
    assert record.getMessage() == "hi [email]"
    assert not hasattr(record, "email") and record.profile_id == 7


def test_a_scrubbed_record_keeps_its_logger_name_and_formats_in_both_formats():
    record = logging.getLogger("c360.test").makeRecord(
        "c360.test",
        logging.INFO,
        __file__,
        1,
        "refreshed %s",
        ("profiles",),
        None,
        extra={"phone": "+447700900123"},
    )
    PiiScrubber().filter(record)
    assert (
        logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
        == "INFO c360.test refreshed profiles"
    )
    doc = json.loads(JsonFormatter().format(record))
    assert doc["logger"] == "c360.test" and "phone" not in doc


def test_production_refuses_a_missing_secret(tmp_path):
    with pytest.raises(RuntimeError):
        load_config(str(tmp_path), {"C360_ENV": "production"})


def test_postgresql_connections_give_up_after_seconds_not_minutes(tmp_path):
    """A request that found PostgreSQL away waited 130 s for its error, holding a web thread.
    The database is the one the final config names (a caller may name another than the
    environment's): SQLite's driver has no such argument."""
    from app.config import engine_options

    pg = engine_options(load_config(str(tmp_path), {"DATABASE_URL": "postgresql://u@db:5432/c360"}))
    assert pg["connect_args"] == {"connect_timeout": 5} and pg["pool_pre_ping"]
    named = {
        **load_config(str(tmp_path), {"DATABASE_URL": "postgresql://u@db/c"}),
        "SQLALCHEMY_DATABASE_URI": "sqlite://",
    }
    assert "connect_args" not in engine_options(named)


def test_production_turns_on_secure_cookies(tmp_path):
    config = load_config(str(tmp_path), {"C360_ENV": "production", "SECRET_KEY": "k"})
    assert config["SESSION_COOKIE_SECURE"] and config["SESSION_COOKIE_HTTPONLY"]


def test_development_generates_and_keeps_a_secret(tmp_path):
    first = load_config(str(tmp_path), {})["SECRET_KEY"]
    assert first == load_config(str(tmp_path), {})["SECRET_KEY"] and len(first) >= 32


def test_plain_postgres_urls_use_psycopg3(tmp_path):
    config = load_config(str(tmp_path), {"DATABASE_URL": "postgresql://u@h/db"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def test_job_ids_are_rq_legal():
    assert safe_job_id("ingest", "shopify", "wh:1/2") == "ingest-shopify-wh_1_2"


def test_in_process_queue_runs_the_job_now_and_survives_its_failure():
    calls = []
    InProcessQueue().enqueue("tests.test_foundation_units._record", calls, 1)
    InProcessQueue().enqueue("tests.test_foundation_units._explode")
    assert calls == [1]


def _record(calls, value):
    calls.append(value)


def _explode():
    raise RuntimeError("boom")


def test_ingest_tuning_comes_from_the_environment(tmp_path):
    config = load_config(str(tmp_path), {"C360_INGEST_BATCH": "200", "C360_INGEST_RETRY_BASE_SECONDS": "2.5"})
    assert config["C360_INGEST_BATCH"] == 200 and config["C360_INGEST_RETRY_BASE_SECONDS"] == 2.5
    assert config["C360_INGEST_MAX_ATTEMPTS"] == 5 and config["C360_INGEST_DRAIN_SECONDS"] == 60


@pytest.mark.parametrize("value", ["0", "-3", "lots"])
def test_a_bad_ingest_setting_is_refused_at_start_up_with_its_name(tmp_path, value):
    with pytest.raises(RuntimeError, match="C360_INGEST_BATCH"):
        load_config(str(tmp_path), {"C360_INGEST_BATCH": value})


@pytest.mark.parametrize(
    "text",
    [
        '"GET /dashboard" 200 12345 55ms',  # an access line's status and size
        "at 2026-01-31 12:00:00 the job ran",
        "shopify customer 7001234567890 and order 5123456789012",
        "took 1234 5678 ms",
        "gid://shopify/Customer/7001",
    ],
)
def test_numbers_that_are_no_phone_survive_the_scrubber(text):
    """A status and size, a timestamp, a 13-digit Shopify id were all masked as phones."""
    assert scrub(text) == text


@pytest.mark.parametrize(
    "phone",
    ["+44 7700 900123", "+447700900123", "07700 900123", "447700900123", "(415) 555-2671", "415-555-2671"]
    + ["+1 415 555 2671", "0044 7700 900123", "4155552671"],
)
def test_phone_numbers_are_masked_however_written(phone):
    assert "555" not in scrub(f"call {phone} now") and "900123" not in scrub(f"call {phone} now")


def test_a_new_instance_folder_is_made_for_the_embedded_database(tmp_path):
    """With SECRET_KEY given, nothing made the folder: ``c360 db upgrade`` failed on a fresh path."""
    folder = tmp_path / "fresh" / "instance"
    config = load_config(str(folder), {"SECRET_KEY": "k"})
    assert folder.is_dir() and config["SQLALCHEMY_DATABASE_URI"].endswith("fresh/instance/c360.sqlite")


def test_the_worker_logs_each_job_unless_told_otherwise(tmp_path):
    """``c360 worker`` logged at WARNING only: in production it wrote nothing while it worked."""
    from app.config import ConfigError

    assert load_config(str(tmp_path), {"SECRET_KEY": "k"})["C360_WORKER_LOG_LEVEL"] == "INFO"
    quiet = load_config(str(tmp_path), {"SECRET_KEY": "k", "C360_WORKER_LOG_LEVEL": "warning"})
    assert quiet["C360_WORKER_LOG_LEVEL"] == "WARNING"
    with pytest.raises(ConfigError, match="C360_WORKER_LOG_LEVEL"):
        load_config(str(tmp_path), {"SECRET_KEY": "k", "C360_WORKER_LOG_LEVEL": "chatty"})


def test_run_worker_works_at_the_configured_log_level(app, monkeypatch):
    from workers import runner

    seen = {}

    class Worker:
        def __init__(self, queues, **kwargs):
            pass

        def work(self, **kwargs):
            seen.update(kwargs)
            return True

    class Queues:
        connection = None

        def queue(self, name):
            return name

    monkeypatch.setattr(runner, "IngestWorker", Worker)
    monkeypatch.setitem(app.extensions, "rq", Queues())
    monkeypatch.setitem(app.config, "C360_WORKER_LOG_LEVEL", "INFO")
    with app.app_context():
        assert runner.run_worker(burst=True)
    assert seen["logging_level"] == "INFO" and seen["burst"] is True


@pytest.mark.parametrize(
    ("typed", "stored", "same"),
    [
        ("zoe", "Zoë", True),
        ("JOSE", "José", True),
        ("o'brien", "O’Brien", True),
        ("gross", "Groß", True),
        ("елена", "Елёна", True),
        ("カトウ", "ガトウ", False),  # a voiced kana is another sound, not an accent
        ("कष", "क्ष", False),  # the virama makes another syllable
    ],
)
def test_search_folds_accents_of_latin_greek_and_cyrillic_letters_only(typed, stored, same):
    from app.search_fold import fold

    assert (fold(typed) == fold(stored)) is same
