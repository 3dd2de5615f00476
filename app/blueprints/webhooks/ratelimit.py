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


def allow(costs: dict[str, int]) -> bool:
    """Count each key's events in this minute, every key charged (one round trip to Redis);
    False when any is over the pixel's ``C360_PIXEL_RATE_PER_MINUTE``."""
    limit = int(current_app.config.get("C360_PIXEL_RATE_PER_MINUTE", 600))
    minute = int(_clock() // 60)
    queue = current_app.extensions.get("rq")
    connection = getattr(queue, "connection", None)
    if connection is not None:
        pipe = connection.pipeline()
        for key, cost in costs.items():
            redis_key = f"{current_app.config['C360_QUEUE_PREFIX']}:rate:{key}:{minute}"
            pipe.incrby(redis_key, cost)
            pipe.expire(redis_key, 120)
        try:
            replies = pipe.execute()
        except RedisError:
            # Redis away: count in this process instead. A pixel does not resend, so refusing
            # (or a 500) would lose the visit; the per-process count still stops a flood.
            log.warning("rate limit counted in-process: Redis unreachable")
        else:
            return all(int(count) <= limit for count in replies[::2])
    with _lock:
        if _minute[0] != minute:  # a new window: forget the last one
            _local.clear()
            _minute[0] = minute
        for key, cost in costs.items():
            _local[key] = _local.get(key, 0) + cost
        return all(_local[key] <= limit for key in costs)


def clock() -> float:
    """Now, as the limits' minutes count it."""
    return _clock()


def seconds_to_next_window() -> int:
    """Seconds until the counts start again (a refused client's ``Retry-After``)."""
    return 60 - int(_clock()) % 60
