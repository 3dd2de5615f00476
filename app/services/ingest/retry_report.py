"""What came of retrying failed deliveries, in the words the console and ``c360 dlq retry`` use.

A retry runs at once in embedded mode and later in a worker under RQ: the report says
what is known (processed, failed again and why) and only what is not as queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.digits import counted

REASON_CHARS = 200


def _reason(error: str | None) -> str:
    text = " ".join((error or "no reason recorded").split())
    return (text[:REASON_CHARS] + "…" if len(text) > REASON_CHARS else text).rstrip(".")


@dataclass
class RetryReport:
    """Counts of retried deliveries by outcome, with the reason of one that failed again."""

    processed: int = 0
    failed: int = 0
    queued: int = 0  # a worker will run them (in embedded mode, the background sweep)
    inline: bool = False  # jobs run in this process (embedded mode): no worker, a sweep thread
    not_retryable: int = 0
    reason: str | None = None  # the error of the first that failed again
    left: int = 0  # failed deliveries past this retry's limit, untouched

    @property
    def retried(self) -> int:
        """How many deliveries were given fresh attempts."""
        return self.processed + self.failed + self.queued

    def add(self, outcome: str, error: str | None = None) -> None:
        """Count one delivery's outcome: ``processed``, ``failed``/``dead`` (with its error), else queued."""
        if outcome == "processed":
            self.processed += 1
        elif outcome in ("failed", "dead"):
            self.failed += 1
            self.reason = self.reason or _reason(error)
        else:
            self.queued += 1

    def one(self, delivery_id: int) -> str:
        """The sentence for a retry of one delivery."""
        if self.processed:
            return f"Delivery {delivery_id} processed."
        if self.failed:
            return f"Delivery {delivery_id} failed again: {self.reason}."
        if self.queued:
            return f"Delivery {delivery_id} queued again: a worker will process it."
        return f"Delivery {delivery_id} is not failed."

    def all(self) -> str:
        """The sentence for a retry of every failed delivery."""
        parts = []
        if self.processed:
            parts.append(f"{self.processed:,} processed")
        if self.failed:
            parts.append(f"{self.failed:,} failed again ({self.reason})")
        if self.queued:
            them = "it" if self.queued == 1 else "them"
            later = "the background sweep works" if self.inline else "a worker will process"
            parts.append(f"{self.queued:,} queued again: {later} {them}")
        if not parts:
            text = "Nothing to retry: no delivery has failed."
        elif len(parts) == 1:  # "2 deliveries processed.", not "2 deliveries retried: 2 processed."
            text = f"{counted(self.retried, 'delivery', 'deliveries')} {parts[0].split(' ', 1)[1]}."
        else:
            text = f"{counted(self.retried, 'delivery', 'deliveries')} retried: {', '.join(parts)}."
        if self.left:
            are = "delivery is" if self.left == 1 else "deliveries are"
            text += f" {self.left:,} more failed {are} left: Retry all again."
        return text
