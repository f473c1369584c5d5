"""Domain errors; each API family turns them into its own error shape in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class AuthenticationFailed(DomainError):
    pass


class ValidationError(DomainError):
    """Bad input, keyed by field name (``__all__`` for the request as a whole)."""

    def __init__(self, errors: dict[str, str] | str) -> None:
        if isinstance(errors, str):
            errors = {"__all__": errors}
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
