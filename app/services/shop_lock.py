"""One writer of a shop's identity graph at a time: ingest batches, console merges, undos, imports.

A batch of deliveries resolves its signals to profiles and then stores their
events, orders and stamps on them, all in one transaction. A merge or an undo
made in the console at the same moment moves identifiers and rows between the
same profiles. Row locks alone do not keep the two apart: the batch may read
a profile as live, wait on the merge's row lock, and then write to the profile
the merge has just emptied, where nobody looks (a mis-assigned event, a stamp
on a merged-away profile).

So every transaction that changes who is who in a shop first takes the shop's
lock, ``pg_advisory_xact_lock(NAMESPACE, shop_id)``, held until it commits or
rolls back: the ingest drain per batch, every resolution (``resolution``'s
batch, so the API's and the console's too), ``merges.merge_profiles`` and
``merges.undo``, a candidate's accept or reject, and an import's resolution
and batches. (A consent record or a send that waited on a merge's row lock
follows the merge instead: ``profile_lock.lock_live``.) Each service takes it itself, so no caller
can forget it; the session remembers which shops its transaction holds, so a
service called under a caller that holds it already sends nothing more.
Shops are locked in id order, so two lockers of several shops cannot deadlock.

SQLite has one writer at a time, and its driver begins a transaction at the
first write: the reads before it see whatever was committed then. Two console
merges of one pair both read "not merged yet", and the second wrote its merge
after the first committed (two live merge rows of one pair). There the lock is
the database's write lock, taken by beginning the transaction ``IMMEDIATE``
where no write has begun it yet, so every read after it sees every committed
change.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db

NAMESPACE = 3603


def hold(shop_ids: Iterable[int], connection: sa.Connection | None = None) -> bool:
    """Take the lock of each shop until the current transaction ends (SQLite: the write lock).

    Returns:
        True when a lock was taken now (and may have been waited for): what the
        transaction read before may have changed since. False when it held them all.
    """
    connection = connection if connection is not None else db.session.connection()
    held = _held()
    wanted = sorted(set(shop_ids) - held)
    if not wanted:
        return False
    if connection.dialect.name == "postgresql":
        for shop_id in wanted:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(NAMESPACE, shop_id)))
    else:
        begin_write(connection)
    held.update(wanted)
    return True


def begin_write(connection: sa.Connection) -> None:
    """SQLite: begin the transaction ``IMMEDIATE`` (the database's write lock) unless a write began it.

    pysqlite begins lazily, at the first write: reads before it see what was committed then, and
    without a real BEGIN each savepoint release would commit on its own. A no-op elsewhere.
    """
    if connection.dialect.name == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _held() -> set[int]:
    """The shops the session's current transaction has locked (a new set for each transaction).

    Inside a savepoint, the locks its transaction took outside any savepoint hold (a copy of
    them is answered), and a lock taken in the savepoint is not remembered: it is released
    if the savepoint rolls back, so it is asked for again (PostgreSQL grants it at once).
    """
    session = db.session()
    transaction = session.get_transaction()
    noted = session.info.get("shop_locks")
    if noted is None or noted[0] is not transaction:
        noted = session.info["shop_locks"] = (transaction, set())
    return set(noted[1]) if session.in_nested_transaction() else noted[1]
