"""Planner statistics: ANALYZE the tables that changed a lot since their last statistics.

PostgreSQL plans every query from each table's statistics, and a prepared
statement keeps its plan until they change. autovacuum refreshes them, but
a server may run with it off (our CI machines do), and even with it on it
looks only once a minute. A shop's tables that grow from empty during an
install or a burst of traffic then keep the estimates of an empty table,
and their lookups and merges are planned as if nothing were there.

Measured with ``resolve_many`` on a fresh shop (batches of 1,000 signals,
autovacuum off): the database's share of each 10,000 signals grew from
3.3 s to 14.9 s over the first 40,000 signals, and the 137,898 signals of
the identity bench took 578 s. With the statistics kept fresh that share
stayed between 2.1 and 3.3 s, and the bench took 157 s.

So the ingest drain, the sweeper and the order backfill (``c360 backfill``) call
``refresh_stale``: it reads ``pg_stat_user_tables`` (one cheap query) and
analyzes each table whose rows changed since its last statistics by more
than autovacuum's own rule (``autovacuum_analyze_threshold`` +
``autovacuum_analyze_scale_factor`` × rows), the same rule whether or not
autovacuum is on. ANALYZE samples a bounded number of rows, so it costs tens
of milliseconds, reads nobody's data into the logs and never blocks reads
or writes. A transaction-scoped advisory lock keeps two workers from
analyzing at once, and a short lock timeout makes it step aside when
autovacuum is already analyzing the table.

SQLite plans without such statistics unless asked, so there it does nothing.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.logging import get_logger
from app.services.bulk_sql import is_postgresql

# pg_try_advisory_xact_lock(namespace, 0): one analyzer at a time across workers.
LOCK_NAMESPACE = 3605
# How often one process looks, at most (seconds): the look is cheap, ANALYZE less so.
MIN_INTERVAL = 5.0
log = get_logger("planner_stats")

_STALE = sa.text(
    """
    SELECT s.relname
    FROM pg_stat_user_tables s
    JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
      AND s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
          + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)
    ORDER BY s.n_mod_since_analyze DESC
    """
)
_last_look = [0.0]


def refresh_stale() -> list[str]:
    """ANALYZE the current schema's tables whose statistics are stale; their names.

    Runs in a transaction of its own (the advisory lock is held for it): call it between
    units of work, never inside one.
    """
    if not is_postgresql():
        return []
    db.session.rollback()
    if not db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(LOCK_NAMESPACE, 0))):
        db.session.rollback()
        return []
    db.session.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
    done = [table for table in db.session.scalars(_STALE).all() if _analyze(table)]
    db.session.commit()
    if done:
        log.debug("planner statistics refreshed for %s", ", ".join(done))
    return done


def refresh_stale_now_and_then() -> list[str]:
    """``refresh_stale`` at most once per ``MIN_INTERVAL`` in this process (for loops that call it often)."""
    now = time.monotonic()
    if now - _last_look[0] < MIN_INTERVAL:
        return []
    _last_look[0] = now
    return refresh_stale()


def _analyze(table: str) -> bool:
    """ANALYZE one table in a savepoint; False when another (autovacuum) holds it and we stepped aside."""
    quoted = db.session.get_bind().dialect.identifier_preparer.quote(table)
    try:
        with db.session.begin_nested():
            db.session.execute(sa.text(f"ANALYZE {quoted}"))
    except DBAPIError as exc:
        log.info("ANALYZE %s skipped (%s)", table, type(exc.orig).__name__)
        return False
    return True
