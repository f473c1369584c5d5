"""Hand-written SQL for the few statements the engine runs for every step.

Peewee builds a statement's SQL anew on each call, which costs more than running it on
SQLite (a profile of 1,000 steps spent two thirds of the database thread in SQL
generation). These statements are built once per table, columns and parameter style, and
then only executed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import peewee


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...], param: str) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join([param] * len(columns))})'


def insert(model: type[peewee.Model], rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys (field names), with one prepared statement."""
    if not rows:
        return
    database = model._meta.database
    fields = model._meta.fields
    given = tuple(rows[0])
    defaults = {n: f.default for n, f in fields.items()
                if n not in given and f.default is not None}  # as Model.insert fills them
    names = given + tuple(defaults)
    columns = tuple(fields[n].column_name for n in names)
    sql = _insert_sql(model._meta.table_name, columns, database.param)
    converters = [fields[n].db_value for n in names]
    params = []
    for row in rows:
        values = [row[n] for n in given]
        values += [d() if callable(d) else d for d in defaults.values()]
        params.append([convert(v) for v, convert in zip(values, converters, strict=True)])
    cursor = database.cursor()
    cursor.executemany(sql, params)


def sql(text: str, model: type[peewee.Model]) -> str:
    """``text`` written with ``?`` placeholders, in the database's own parameter style."""
    return text.replace("?", model._meta.database.param)
