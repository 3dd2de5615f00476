"""The worker's idle heartbeat is throttled; job heartbeats (with a timeout or a pipeline) never are."""

from __future__ import annotations

import fakeredis
from rq import Queue, SimpleWorker

from workers import runner


def test_idle_heartbeats_are_sent_once_per_interval_and_job_heartbeats_always(monkeypatch):
    sent = []
    monkeypatch.setattr(
        SimpleWorker, "heartbeat", lambda self, timeout=None, pipeline=None: sent.append(timeout)
    )
    clock = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    connection = fakeredis.FakeStrictRedis()
    worker = runner.IngestWorker([Queue("hb", connection=connection)], connection=connection)
    worker.heartbeat()
    worker.heartbeat()  # a job later: skipped
    worker.heartbeat(90)  # a job's own timeout: always sent
    worker.heartbeat(pipeline=connection.pipeline())  # part of a job's pipeline: always sent
    clock[0] += runner.HEARTBEAT_EVERY_SECONDS
    worker.heartbeat()
    assert sent == [None, 90, None, None]


def test_an_idle_worker_wakes_for_its_maintenance_within_the_maintenance_interval():
    """RQ runs maintenance (which restarts a dead scheduler, the only releaser of backoff retries
    and the minute sweep) only between dequeues; an idle worker waited 405 s in each, so a killed
    scheduler stopped sweeps and retries for up to seven minutes, not one."""
    connection = fakeredis.FakeStrictRedis()
    worker = runner.IngestWorker(
        [Queue("idle", connection=connection)],
        connection=connection,
        maintenance_interval=runner.MAINTENANCE_SECONDS,
    )
    assert worker.worker_ttl - 15 > runner.MAINTENANCE_SECONDS  # RQ's own wait would be longer
    assert 0 < worker.dequeue_timeout <= runner.MAINTENANCE_SECONDS
    assert worker.connection_timeout > worker.dequeue_timeout  # the socket outlives the wait


def test_a_job_that_leaves_its_session_broken_does_not_fail_the_next_job_on_the_worker(app, db):
    """The worker keeps one session for all its jobs: a job whose connection broke left it needing
    a rollback, and the next job (a shop's drain) failed on it with PendingRollbackError."""
    connection = fakeredis.FakeStrictRedis()
    queue = Queue("session", connection=connection)
    queue.enqueue("tests.worker_jobs.leave_the_session_broken")
    after = queue.enqueue("tests.worker_jobs.count_profiles")
    runner.IngestWorker([queue], connection=connection).work(burst=True, with_scheduler=False)
    assert after.get_status(refresh=True) == "finished" and after.return_value() == 0
