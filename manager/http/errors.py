"""One place that turns errors into responses, in each API family's own shape.

- IML (``/api/``): ``{field: message}`` bodies (``__all__`` when no field is to blame);
  500s as ``{"error_message", "traceback"?}`` as iml-api.md documents.
- BOS/IMS (``/apis/``): RFC 7807 ``application/problem+json``.
- Freezer sessions (``/v2/``): ``{"title", "description"}``, the falcon shape freezer-api uses.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
from typing import Any

import peewee

from manager.db.executor import DatabaseUnavailable
from manager.domain import errors as domain
from manager.http import encoding


class ApiError(Exception):
    """An HTTP error with a message or field errors; rendered per family by ``render``."""

    def __init__(self, status: int, errors: dict[str, Any] | str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(str(errors))
        self.status = status
        self.errors = {"__all__": errors} if isinstance(errors, str) else errors
        self.headers = headers or {}

    @property
    def message(self) -> str:
        if set(self.errors) == {"__all__"}:
            return str(self.errors["__all__"])
        return "; ".join(f"{k}: {v}" for k, v in self.errors.items())


def from_exception(exc: BaseException) -> ApiError | None:
    """Map a domain or infrastructure error to an ApiError; None for an unexpected error."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, domain.ValidationError):
        return ApiError(400, exc.errors)
    if isinstance(exc, domain.NotFound):
        return ApiError(404, exc.message or "Not found")
    if isinstance(exc, domain.PermissionDenied):
        return ApiError(403, exc.message or "Permission denied")
    if isinstance(exc, domain.AuthenticationFailed):
        return ApiError(401, exc.message or "Authentication required")
    if isinstance(exc, domain.Conflict):
        return ApiError(409, exc.message or "Conflict")
    if _is_integrity_error(exc):
        # the domain checked the constraint, but a concurrent request won the race to commit
        # (PostgreSQL reads committed rows only): the constraint's own text is not shown
        return ApiError(409, "Another request changed this at the same time; try again.")
    if isinstance(exc, DatabaseUnavailable):
        return ApiError(503, "The database is unavailable; try again shortly.", {"Retry-After": "5"})
    return None


def _is_integrity_error(exc: BaseException) -> bool:
    """peewee's IntegrityError, or the driver's own where a raw cursor ran the statement
    (psycopg2's carry SQLSTATE class 23, integrity constraint violation)."""
    if isinstance(exc, (peewee.IntegrityError, sqlite3.IntegrityError)):
        return True
    return str(getattr(exc, "pgcode", None) or "").startswith("23")


def family_of(path: str) -> str:
    if path.startswith("/apis/"):
        return "problem"
    if path.startswith("/v2/"):
        return "freezer"
    return "iml"


def render(family: str, error: ApiError, request_id: str, path: str) -> tuple[str, bytes]:
    """Content type and body for ``error`` in ``family``'s shape."""
    reason = http.client.responses.get(error.status, "Error")
    if family == "problem":
        body: dict[str, Any] = {"type": "about:blank", "title": reason, "status": error.status,
                                "detail": error.message, "instance": path}
        if set(error.errors) != {"__all__"}:
            body["errors"] = error.errors
        return "application/problem+json", _dump(body)
    if family == "freezer":
        body = {"title": reason, "description": error.message}
        return "application/json; charset=UTF-8", _dump(body)
    return "application/json; charset=UTF-8", _dump(error.errors)


def render_server_error(family: str, request_id: str, path: str,
                        traceback_text: str | None) -> tuple[str, bytes]:
    message = f"Internal server error (request id {request_id}); see the manager's log."
    if family == "iml":
        body: dict[str, Any] = {"error_message": message}
        if traceback_text:
            body["traceback"] = traceback_text
        return "application/json; charset=UTF-8", _dump(body)
    content_type, data = render(family, ApiError(500, message), request_id, path)
    if traceback_text:
        doc = json.loads(data)
        doc["traceback"] = traceback_text
        data = _dump(doc)
    return content_type, data


def _dump(doc: Any) -> bytes:
    return encoding.dumps(doc)
