"""A per-client, per-minute rate limit for the public pixel endpoint (sign-in attempts are
counted on the account, ``accounts.sign_in_waits``, on this module's clock).

Counts live in Redis when it is configured (shared by every web process)
and in this process otherwise.
"""

from __future__ import annotations

import threading
import time

from flask import current_app
from redis.exceptions import RedisError

from app.logging import get_logger

log = get_logger("ratelimit")

_lock = threading.Lock()
_local: dict[str, int] = {}
_minute = [0]
_clock = time.time  # the window's clock (a test holds it still across a minute's boundary)


def allow(key: str, cost: int = 1) -> bool:
    """Count ``cost`` events for ``key`` in this minute; False once over the pixel's
    ``C360_PIXEL_RATE_PER_MINUTE``."""
    limit = int(current_app.config.get("C360_PIXEL_RATE_PER_MINUTE", 600))
    minute = int(_clock() // 60)
    queue = current_app.extensions.get("rq")
    connection = getattr(queue, "connection", None)
    if connection is not None:
        redis_key = f"{current_app.config['C360_QUEUE_PREFIX']}:rate:{key}:{minute}"
        pipe = connection.pipeline()
        pipe.incrby(redis_key, cost)
        pipe.expire(redis_key, 120)
        try:
            count, _ = pipe.execute()
        except RedisError:
            # Redis away: count in this process instead. A pixel does not resend, so refusing
            # (or a 500) would lose the visit; the per-process count still stops a flood.
            log.warning("rate limit counted in-process: Redis unreachable")
        else:
            return int(count) <= limit
    with _lock:
        if _minute[0] != minute:  # a new window: forget the last one
            _local.clear()
            _minute[0] = minute
        _local[key] = _local.get(key, 0) + cost
        return _local[key] <= limit


def clock() -> float:
    """Now, as the limits' minutes count it."""
    return _clock()


def seconds_to_next_window() -> int:
    """Seconds until the counts start again (a refused client's ``Retry-After``)."""
    return 60 - int(_clock()) % 60
