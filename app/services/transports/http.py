"""A small JSON/form HTTP client on ``urllib`` for the provider adapters."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from app.services.transports import TransportError

TIMEOUT_SECONDS = 10


def post(
    url: str, *, headers: dict[str, str], json_body: Any = None, form: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """POST and return ``(status, headers, parsed body)``; raise ``TransportError`` on failure.

    4xx other than 429 are not retryable (the request itself is wrong).
    """
    if not url.startswith(("http://", "https://")):
        raise TransportError(f"not an http(s) URL: {url!r}", retryable=False)
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    else:
        data = json.dumps(json_body).encode()
        headers = {**headers, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, dict(response.headers), _parse(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        retryable = exc.code == 429 or exc.code >= 500
        text = raw.decode(errors="replace")[:500]
        raise TransportError(
            f"HTTP {exc.code}: {text}", status=exc.code, retryable=retryable, answer=_parse(raw)
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise TransportError(f"cannot reach provider: {exc}") from None


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
