"""The one list of secret field names, and removing them from anything logged or audited."""

from __future__ import annotations

from typing import Any

SECRET_KEYS = frozenset({
    "password", "password1", "password2", "new_password1", "new_password2", "root_pw",
    "private_key", "private_key_passphrase", "token", "secret", "access_token",
    "register_command", "csrftoken", "sessionid",
})
MASK = "********"
#: nesting kept in a redacted copy; deeper values become ``DEEP`` (no secret field lies that
#: deep in any real body, and a JSON parser accepts nesting deep enough to exhaust the stack)
MAX_DEPTH = 32
DEEP = "…"


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with every secret field's value masked, at any depth."""
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        return DEEP
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in SECRET_KEYS and v not in (None, "")
                else redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    return value
