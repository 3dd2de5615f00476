"""The minute sweep in embedded mode: a thread of the web server, since no RQ scheduler runs.

With ``REDIS_URL`` set, ``c360 worker`` schedules ``workers.ingest.sweep_job`` every
minute. A merchant's laptop runs ``c360 serve`` alone, with jobs in-process: without
this thread a delivery that failed once would wait for its retry until the next
webhook happened to arrive, and a message the provider could not take, or a row
left behind by a crash, until someone ran a command.

Every process of the server starts the thread; the one holding an exclusive lock on
``sweeper.lock`` in the instance folder sweeps, the others keep trying for the lock,
so the sweep goes on when that process is recycled. The work itself is safe to
repeat (claims skip what another holds), the lock only keeps it from running twice.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO

from flask import Flask

from app.logging import get_logger

try:
    import fcntl
except ImportError:  # Windows: every process sweeps, which is safe, only wasteful
    fcntl = None

INTERVAL_SECONDS = 60.0
log = get_logger("embedded")


def wanted(app: Flask) -> bool:
    """Whether this app needs the thread: jobs run in-process, and it is not a test run."""
    queue = app.extensions.get("rq")
    return bool(getattr(queue, "runs_inline", False)) and not app.testing


def start(app: Flask, interval: float = INTERVAL_SECONDS) -> Sweeper | None:
    """Start the sweep thread when ``wanted``; the running ``Sweeper``, or None."""
    if not wanted(app):
        return None
    sweeper = Sweeper(app, interval)
    sweeper.start()
    return sweeper


class Sweeper(threading.Thread):
    """Every ``interval`` seconds: take the lock if free, and sweep while holding it."""

    def __init__(self, app: Flask, interval: float = INTERVAL_SECONDS, lock_path: Path | None = None):
        super().__init__(name="c360-embedded-sweep", daemon=True)
        self.app, self.interval = app, interval
        self.lock_path = lock_path or Path(app.instance_path) / "sweeper.lock"
        self.lock: IO | None = None
        self.stopped = threading.Event()
        self.sweeps = 0

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            if self.hold_lock():
                self.sweep()

    def stop(self) -> None:
        self.stopped.set()
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def hold_lock(self) -> bool:
        """True while this process holds the sweeper's lock (taken at the first chance)."""
        if self.lock is not None or fcntl is None:
            return True
        os.makedirs(self.lock_path.parent, exist_ok=True)
        handle = open(self.lock_path, "a")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self.lock = handle
        return True

    def sweep(self) -> int:
        """One sweep in an app context of its own; a failure is logged and the next minute tries again."""
        from app.extensions import db
        from workers.ingest import sweep_once

        with self.app.app_context():
            try:
                count = sweep_once()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a bad minute
                db.session.rollback()
                log.error("embedded sweep failed (%s)", type(exc).__name__)
                count = 0
            finally:
                db.session.remove()
        self.sweeps += 1
        return count
