"""``column IN (values)`` for thousands of values, as one statement parameter.

Peewee renders ``in_`` with one placeholder per value, and building that SQL costs more than
running it (a third of a 10,000-node import went to it). Passed whole instead — a PostgreSQL
array (``= ANY(%s)``), a JSON array read by SQLite's ``json_each`` — the statement is short
and the same for any number of values, and both databases still search the column's index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import peewee

from manager.db.base import is_postgres


def among(column: Any, values: Iterable[Any]) -> peewee.ColumnBase:
    """The condition "``column`` is one of ``values``" (strings or integers, as stored: the
    column's own conversion is not applied)."""
    values = list(values)
    if is_postgres():
        return peewee.NodeList((column, peewee.SQL("= ANY(%s)", [values])))
    return peewee.NodeList((column, peewee.SQL("IN (SELECT value FROM json_each(?))",
                                               [json.dumps(values)])))
