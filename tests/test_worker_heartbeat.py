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
