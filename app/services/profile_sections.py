"""The sections other services contribute to the profile document.

Each entry names ``f(shop, profile) -> dict`` whose keys are merged into
the profile document; consents, messaging and recommendations add a line
here so that ``profile_view`` needs to know no feature's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

SECTION_PATHS: list[str] = [
    "app.services.consent.consents_section",
    "app.services.messaging.messaging_section",
    "app.services.recommendations.recommendations_section",
]


def sections() -> Iterator[Callable[[Any, Any], dict[str, Any]]]:
    """Yield each registered section builder."""
    for path in SECTION_PATHS:
        module, _, name = path.rpartition(".")
        yield getattr(import_module(module), name)
