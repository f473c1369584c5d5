"""Hand-written SQL for the few statements the engine runs for every step.

Peewee builds a statement's SQL anew on each call, which costs more than running it on
SQLite (a profile of 1,000 steps spent two thirds of the database thread in SQL
generation). These statements are built once per table, columns and parameter style, and
then only executed.

On PostgreSQL each statement is a round trip to the server, and each round trip hands the
interpreter lock to the event loop and waits to get it back. ``execute_together`` sends
several writes in one round trip there (psycopg2 binds parameters on the client, so a
string of statements goes as one query); on SQLite, which has no round trips, it runs them
one by one.

The statements of every step are also *prepared* on PostgreSQL (``prepared``): parsed and
planned once per connection, then only executed. Planning the step's job query took 0.23 ms
of the server's time per run on this 2-core machine, three times what running it took.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import peewee

from manager.db.base import is_postgres

Statement = tuple[str, list[Any]]

#: rows per multi-row INSERT (SQLite allows 32,766 parameters in one statement)
ROWS_PER_INSERT = 500


@functools.lru_cache(maxsize=256)
def insert_sql(table: str, columns: tuple[str, ...], param: str, count: int) -> str:
    """A multi-row INSERT of ``count`` rows into ``columns``, ``param`` the placeholder."""
    names = ", ".join(f'"{c}"' for c in columns)
    row = f'({", ".join([param] * len(columns))})'
    return f'INSERT INTO "{table}" ({names}) VALUES {", ".join([row] * count)}'


def insert(model: type[peewee.Model], rows: Sequence[dict[str, Any]], prepare: bool = False
           ) -> None:
    """Insert rows that all have the same keys (field names); ``prepare`` as below."""
    execute_together(model._meta.database, insert_statements(model, rows, prepare))


def insert_statements(model: type[peewee.Model], rows: Sequence[dict[str, Any]],
                      prepare: bool = False) -> list[Statement]:
    """Multi-row INSERTs of rows that all have the same keys (field names), with the
    model's defaults filled in as ``Model.insert`` fills them. ``prepare``: a one-row
    INSERT runs as a prepared statement (for the engine's per-step rows; a fan-out's
    many-row INSERTs vary in size and are not worth a plan each)."""
    if not rows:
        return []
    database = model._meta.database
    plan = _insert_plan(model, tuple(rows[0]))
    statements = []
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start:start + ROWS_PER_INSERT]
        params: list[Any] = []
        for row in chunk:
            values = [row[n] for n in plan.given]
            values += [d() if callable(d) else d for d in plan.defaults]
            params += [v if kind is not None and (v is None or type(v) is kind) else convert(v)
                       for v, convert, kind in zip(values, plan.converters, plan.kept,
                                                   strict=True)]
        text = insert_sql(model._meta.table_name, plan.columns, database.param, len(chunk))
        statements.append((prepared(database, text) if prepare and len(chunk) == 1 else text,
                           params))
    return statements


class _InsertPlan(NamedTuple):
    given: tuple[str, ...]  # the rows' own keys, then the defaults' fields
    defaults: tuple[Any, ...]
    columns: tuple[str, ...]
    converters: tuple[Callable[[Any], Any], ...]
    kept: tuple[type | None, ...]  # a value of this type (or None) needs no converting


#: peewee's own conversions that return a value of the given type unchanged
_UNCHANGED = ((peewee._StringField.adapt, str), (peewee.IntegerField.adapt, int),
              (peewee.DateTimeField.adapt, datetime.datetime))


def _kept_type(field: peewee.Field) -> type | None:
    """The type whose values ``field`` stores as they are, if its conversion is peewee's own
    (a field class with a ``db_value`` of its own, JSON say, always converts)."""
    cls = type(field)
    if cls.db_value is not peewee.Field.db_value:
        return None
    return next((kind for adapt, kind in _UNCHANGED if cls.adapt is adapt), None)


@functools.lru_cache(maxsize=256)
def _insert_plan(model: type[peewee.Model], given: tuple[str, ...]) -> _InsertPlan:
    """What an INSERT of rows with keys ``given`` writes: worked out once per model and keys
    (an audit row's INSERT spent as long on this as on running)."""
    fields = model._meta.fields
    defaults = {n: f.default for n, f in fields.items()
                if n not in given and f.default is not None}
    names = given + tuple(defaults)
    return _InsertPlan(given, tuple(defaults.values()),
                       tuple(fields[n].column_name for n in names),
                       tuple(fields[n].db_value for n in names),
                       tuple(_kept_type(fields[n]) for n in names))


def execute_together(database: peewee.Database, statements: Sequence[Statement]) -> None:
    """Run writes in order: one round trip on PostgreSQL, one call each on SQLite."""
    if not statements:
        return
    cursor = database.cursor()
    if is_postgres(database) and len(statements) > 1:
        cursor.execute(";\n".join(text for text, _ in statements),
                       [p for _, params in statements for p in params])
        return
    for text, params in statements:
        cursor.execute(text, params)


def sql(text: str, model: type[peewee.Model]) -> str:
    """``text`` written with ``?`` placeholders, in the database's own parameter style."""
    return text.replace("?", model._meta.database.param)


@functools.lru_cache(maxsize=512)
def _statement_name(text: str) -> tuple[str, int]:
    """A prepared statement's name (from its text) and its number of parameters."""
    return "shp_" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest(), text.count("%s")


_prepared_on: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()


def prepared(database: peewee.Database, text: str) -> str:
    """``text`` (in psycopg2's ``%s`` style) as the ``EXECUTE`` of a statement prepared on
    this thread's connection, preparing it there first if need be; ``text`` itself on
    SQLite, whose driver keeps compiled statements already.

    A prepared statement lives as long as its connection and survives a rolled-back
    transaction, so each connection prepares each statement once; a new connection (after
    the database was away) starts afresh."""
    if not is_postgres(database):
        return text
    connection = database.connection()
    name, count = _statement_name(text)
    with _prepared_lock:
        known = _prepared_on.setdefault(connection, set())
        ready = name in known
    if not ready:
        pieces = text.split("%s")
        numbered = "".join(f"{piece}${n}" for n, piece in enumerate(pieces[:-1], 1))
        connection.cursor().execute(f"PREPARE {name} AS {numbered}{pieces[-1]}")
        with _prepared_lock:
            known.add(name)
    return f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"
