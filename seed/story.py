"""The seed's "Sarah uses two emails" story, replayed through the real pipeline."""

from __future__ import annotations


def replay_sarah(shop) -> None:
    """Replay ``fixtures/sarah/story.json`` once ingest exists (issue 3)."""
    return None
