"""Running RQ workers inside the app context."""

from __future__ import annotations

from flask import current_app
from rq import SimpleWorker

from app.jobs import QUEUES


def run_worker(burst: bool = False) -> bool:
    """Work the project's queues in priority order (webhooks first).

    A ``SimpleWorker`` runs jobs in this process, inside the app context
    pushed by the CLI, and keeps its database pool; scale out by starting
    more ``c360 worker`` processes.
    """
    queue = current_app.extensions["rq"]
    queues = [queue.queue(name) for name in QUEUES]
    worker = SimpleWorker(queues, connection=queue.connection)
    return worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
