"""Running RQ workers inside the app context."""

from __future__ import annotations

import time

from flask import current_app
from rq import SimpleWorker

from app.jobs import QUEUES

# Idle heartbeats closer together than this are skipped: the worker key's TTL
# (``worker_ttl``, minutes) is far longer, and each one costs three Redis round trips.
HEARTBEAT_EVERY_SECONDS = 10.0
# RQ's maintenance (its default is every 10 minutes) restarts the scheduler process, which dies
# with a lost Redis connection and alone releases delayed jobs (backoff retries, the minute sweep):
# after a Redis blip nothing was swept or retried for ten minutes.
MAINTENANCE_SECONDS = 60


class IngestWorker(SimpleWorker):
    """A ``SimpleWorker`` that sends its idle heartbeat at most every few seconds, not around every job."""

    _last_beat = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        """Skip a default heartbeat sent less than ``HEARTBEAT_EVERY_SECONDS`` after the last one."""
        beat = time.monotonic()
        if timeout is None and pipeline is None and beat - self._last_beat < HEARTBEAT_EVERY_SECONDS:
            return
        if pipeline is None:
            self._last_beat = beat
        super().heartbeat(timeout, pipeline)

    @property
    def dequeue_timeout(self) -> int:
        """Wait for a job at most until the next maintenance is due.

        RQ runs maintenance only between dequeues, and an idle worker's wait is ``worker_ttl``
        less 15 s (405 s): a killed scheduler held back sweeps and retries for that long.
        """
        return max(1, min(super().dequeue_timeout, MAINTENANCE_SECONDS))

    def execute_job(self, job, queue):
        """Run the job, then end its database session whatever happened.

        The worker keeps one app context, so one session, for all its jobs: a job whose connection
        broke left the session needing a rollback and the next job failed on it (a shop's drain
        after an enrichment), and a job that read after its last commit left its connection idle in
        a transaction, holding back vacuum, until the next job.
        """
        try:
            return super().execute_job(job, queue)
        finally:
            end_session()

    def run_maintenance_tasks(self):
        """RQ's maintenance, then the minute sweep scheduled again if its chain broke.

        The sweep schedules its successor, so one sweep that could not do so (Redis away at that
        moment) ended the chain until a worker started; a slot already scheduled is not doubled.
        """
        super().run_maintenance_tasks()
        from workers.ingest import schedule_sweep

        try:
            schedule_sweep()
        except Exception:  # Redis away again: the next maintenance tries again
            self.log.warning("could not schedule the minute sweep", exc_info=True)


def end_session() -> None:
    """Roll back and return the job's connection to the pool (a dead one is discarded)."""
    from app.extensions import db

    try:
        db.session.remove()
    except Exception:  # noqa: BLE001 - a broken connection: the pool replaces it on next use
        db.session.registry.clear()


def run_worker(burst: bool = False) -> bool:
    """Work the project's queues in priority order (webhooks first).

    A ``SimpleWorker`` runs jobs in this process, inside the app context
    pushed by the CLI, and keeps its database pool; scale out by starting
    more ``c360 worker`` processes.
    """
    queue = current_app.extensions["rq"]
    queues = [queue.queue(name) for name in QUEUES]
    worker = IngestWorker(queues, connection=queue.connection, maintenance_interval=MAINTENANCE_SECONDS)
    # INFO: a line per job started and done (job names and row ids, no personal data), so a
    # worker shows it is alive; C360_WORKER_LOG_LEVEL=WARNING quiets it.
    return worker.work(
        burst=burst,
        with_scheduler=True,
        logging_level=current_app.config.get("C360_WORKER_LOG_LEVEL", "INFO"),
    )
