"""The job queue behind one small interface.

With ``REDIS_URL`` set, jobs go to RQ queues named by service level
(``webhooks``, ``default``, ``analytics``) and run in ``c360 worker``
processes. Without it (the embedded default) they run in-process, right
away, in the caller's app context. Callers commit before they enqueue, and
jobs take ids, never ORM objects, so both modes behave the same.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from flask import Flask, current_app

from app.logging import get_logger

QUEUES = ("webhooks", "default", "analytics")
JOB_ID_RE = re.compile(r"[^A-Za-z0-9_-]")
log = get_logger("jobs")


def safe_job_id(*parts: object) -> str:
    """Join parts into an RQ-legal job id (``[A-Za-z0-9_-]``)."""
    return JOB_ID_RE.sub("_", "-".join(str(p) for p in parts))[:200]


def resolve(func_path: str) -> Callable:
    """Import ``package.module.function`` and return the function."""
    module, _, name = func_path.rpartition(".")
    return getattr(import_module(module), name)


@dataclass
class InProcessQueue:
    """Runs each job at once in this process (embedded mode, and the fallback)."""

    runs_inline = True

    def enqueue(self, func_path: str, *args, job_id: str | None = None, queue: str = "default"):
        try:
            resolve(func_path)(*args)
        except Exception:  # the job's own retry bookkeeping has recorded the failure
            log.error("in-process job failed: %s %s\n%s", func_path, job_id, traceback.format_exc())
        return job_id

    def enqueue_in(self, delay_seconds: float, func_path: str, *args, **kwargs):
        """Embedded mode has no scheduler: the sweeper picks the work up later."""
        return None

    def enqueue_once(self, key: str, func_path: str, *args, queue: str = "default", ttl: int = 60):
        """Nothing can be queued twice in-process: the job runs now."""
        return self.enqueue(func_path, *args, queue=queue)

    def release_once(self, key: str) -> None:
        """No flag to clear in-process."""

    def check_reachable(self) -> None:
        """In-process: always there."""


class RQQueue:
    """RQ on Redis; a repeated ``job_id`` is a no-op (``unique=True``)."""

    runs_inline = False

    def __init__(self, redis_url: str, prefix: str):
        from redis import Redis

        self.connection = Redis.from_url(redis_url)
        self.prefix = prefix

    def queue(self, name: str):
        from rq import Queue

        return Queue(f"{self.prefix}-{name}", connection=self.connection, default_timeout=600)

    def enqueue(self, func_path: str, *args, job_id: str | None = None, queue: str = "default"):
        from rq.exceptions import DuplicateJobError

        # RQ job ids are global to the Redis server: the prefix keeps deployments
        # (and concurrent test runs) from deduplicating each other's jobs.
        job_id = safe_job_id(self.prefix, job_id) if job_id else None
        try:
            job = self.queue(queue).enqueue(
                func_path, *args, job_id=job_id, unique=bool(job_id), failure_ttl=365 * 86400
            )
        except DuplicateJobError:
            return job_id
        return job.id

    def enqueue_once(self, key: str, func_path: str, *args, queue: str = "default", ttl: int = 60):
        """Queue the job unless one queued under ``key`` has not started yet (it will see our work).

        A Redis ``SET NX`` flag, cleared by the job itself (``release_once``) before it reads
        anything: work committed before a failed ``SET NX`` is read by the job holding the flag,
        work committed after the clear queues a new job. The TTL only bounds a flag whose job was
        lost (the sweeper covers that work meanwhile).
        """
        if not self.connection.set(self._once_key(key), 1, nx=True, ex=ttl):
            return None
        return self.enqueue(func_path, *args, queue=queue)

    def release_once(self, key: str) -> None:
        """Clear ``key``'s flag: the next ``enqueue_once`` queues a new job."""
        self.connection.delete(self._once_key(key))

    def check_reachable(self) -> None:
        """Raise ``redis.exceptions.ConnectionError`` unless Redis answers (before changing rows
        whose work it must then queue)."""
        self.connection.ping()

    def _once_key(self, key: str) -> str:
        return f"{self.prefix}:once:{key}"

    def enqueue_in(self, delay_seconds: float, func_path: str, *args, queue: str = "default", **kw):
        import datetime as dt

        job = self.queue(queue).enqueue_in(dt.timedelta(seconds=delay_seconds), func_path, *args)
        return job.id

    def queue_names(self) -> list[str]:
        return [f"{self.prefix}-{q}" for q in QUEUES]


def init_app(app: Flask) -> None:
    """Put the queue for this configuration in ``app.extensions["rq"]``."""
    url = app.config.get("REDIS_URL")
    app.extensions["rq"] = RQQueue(url, app.config["C360_QUEUE_PREFIX"]) if url else InProcessQueue()


def get_queue():
    """The current app's queue."""
    return current_app.extensions["rq"]


def enqueue(func_path: str, *args, job_id: str | None = None, queue: str = "default"):
    """Enqueue ``func_path(*args)``; call only after committing what the job reads."""
    return get_queue().enqueue(func_path, *args, job_id=job_id, queue=queue)


def enqueue_once(key: str, func_path: str, *args, queue: str = "default", ttl: int = 60):
    """Enqueue ``func_path(*args)`` unless a job queued under ``key`` has not cleared it yet."""
    return get_queue().enqueue_once(key, func_path, *args, queue=queue, ttl=ttl)
