"""Checks of input values, declared per field: each takes a value and returns it cleaned, or
raises ``Invalid`` with the message a client sees next to the field's name."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from manager.domain.errors import ValidationError

Check = Callable[[Any], Any]
LINE_BREAKS = re.compile(r"[\n\r\x00]")


class Invalid(Exception):
    """A value a check refuses; its message is shown to the client."""


def text(max_length: int, pattern: str | None = None, what: str = "", null: bool = False,
         blank: bool = True) -> Check:
    """A string of at most ``max_length`` characters, matching ``pattern`` if given (``what``
    says in words what it allows); ``null`` accepts None, ``blank`` the empty string."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any) -> str | None:
        if value is None and null:
            return None
        if not isinstance(value, str):
            raise Invalid(f"Must be a string{' or null' if null else ''}.")
        if not value and not blank:
            raise Invalid("This field may not be blank.")
        if len(value) > max_length:
            raise Invalid(f"At most {max_length} characters.")
        if LINE_BREAKS.search(value):
            raise Invalid("Line breaks and NUL characters are not allowed.")
        if value and compiled is not None and not compiled.fullmatch(value):
            raise Invalid(f"Not allowed: {what or 'unexpected characters'}.")
        return value
    return check


def integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid(f"Must be an integer from {low} to {high}.")
        return value
    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("Must be true or false.")
    return value


def choice(options: tuple[str, ...], fold: bool = True) -> Check:
    """One of ``options``, matched regardless of case when ``fold``; returned as declared."""
    by_key = {(o.lower() if fold else o): o for o in options}

    def check(value: Any) -> str:
        key = value.lower() if isinstance(value, str) and fold else value
        if not isinstance(value, str) or key not in by_key:
            raise Invalid(f"Must be one of: {', '.join(options)}.")
        return by_key[key]
    return check


def clean(values: Mapping[str, Any], checks: Mapping[str, Check]) -> tuple[dict, dict[str, str]]:
    """(cleaned values, errors by field) for the fields present in ``values``; a field that
    has no check is refused."""
    cleaned, errors = {}, {}
    for name, value in values.items():
        check = checks.get(name)
        if check is None:
            errors[name] = "Unknown field."
            continue
        try:
            cleaned[name] = check(value)
        except Invalid as exc:
            errors[name] = str(exc)
    return cleaned, errors


def cleaned_or_raise(values: Mapping[str, Any], checks: Mapping[str, Check]) -> dict:
    cleaned, errors = clean(values, checks)
    if errors:
        raise ValidationError(errors)
    return cleaned
