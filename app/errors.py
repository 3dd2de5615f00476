"""Domain errors raised by services; blueprints turn them into HTTP answers."""

from __future__ import annotations


class DomainError(Exception):
    """Base of errors a user can act on; ``code`` is stable, ``message`` is for people."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class NotFound(DomainError):
    """The record does not exist in this shop (or in any shop: we never say which)."""

    status = 404
    code = "not_found"


class Forbidden(DomainError):
    """The caller's role or plan does not allow this."""

    status = 403
    code = "forbidden"


class Conflict(DomainError):
    """The request clashes with the record's current state."""

    status = 409
    code = "conflict"


class ValidationFailed(DomainError):
    """A well-formed request with a value we cannot accept."""

    status = 422
    code = "invalid"
