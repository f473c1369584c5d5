"""Durations on the command line: "90s", "10m", "2h", "7d", or sums such as "1h30m"."""

from __future__ import annotations

import datetime
import re
from typing import Any

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+)([smhd])")
_WHOLE = re.compile(r"^(?:\d+[smhd])+\Z")


def parse_duration(value: str) -> datetime.timedelta:
    """``"1h30m"`` → 90 minutes; ValueError for anything else, including zero."""
    value = value.strip().lower()
    if not _WHOLE.match(value):
        raise ValueError(f"{value!r} is not a duration; use a number and a unit: 90s, 10m, 2h, 7d")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if seconds == 0:
        raise ValueError("a duration must be longer than 0s")
    if seconds > 3650 * 86400:
        raise ValueError(f"{value!r} is longer than ten years")
    return datetime.timedelta(seconds=seconds)


class Duration(click.ParamType):
    """A click parameter type for ``parse_duration`` (a bad value is a usage error, exit 2)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime.timedelta:
        if isinstance(value, datetime.timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
