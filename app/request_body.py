"""A request's whole body, or a 413: never a body cut short at the size limit.

Webhooks and the API read their bodies raw (a signature is over the exact bytes).
A body over ``MAX_CONTENT_LENGTH`` (1 MiB) is refused as too large, whether it
names its length or comes in chunks: a chunked body names no length up front and
its stream stops at the limit, so one that fills it is taken as cut short rather
than read in part and then refused as not JSON or not matching its signature.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge


def whole_body() -> bytes:
    """The request body, cached; ``RequestEntityTooLarge`` past the limit."""
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    body = request.get_data(cache=True)
    if limit is not None and request.content_length is None and len(body) >= limit:
        raise RequestEntityTooLarge()
    return body
