"""The one list of secret field names, and removing them from anything logged or audited."""

from __future__ import annotations

from typing import Any

SECRET_KEYS = frozenset({
    "password", "password1", "password2", "new_password1", "new_password2", "root_pw",
    "private_key", "private_key_passphrase", "token", "secret", "access_token",
    "register_command", "csrftoken", "sessionid",
})
MASK = "********"


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret field's value masked, at any depth."""
    if isinstance(value, dict):
        return {k: MASK if k.lower() in SECRET_KEYS and v not in (None, "") else redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
