"""The database binding: one proxy every model uses, bound at start from a URL.

SQLite (embedded default) runs in WAL mode with ``synchronous=FULL`` so a committed write
survives power loss; PostgreSQL sessions run with ``synchronous_commit=on`` whatever the
server's default, so a COMMIT returns (and the API answers) only once its WAL is flushed. Connections are per thread and kept open: the DB executor's threads
each hold one, which is the pool (peewee's own pool pings the server on every checkout).
"""

from __future__ import annotations

import datetime
import logging
import os
from urllib.parse import parse_qs, unquote, urlparse

import peewee

from manager.db.postgres import PostgresDatabase
from manager.db.sqlite import SqliteDatabase

database_proxy = peewee.DatabaseProxy()

# Peewee logs every statement with its parameters at DEBUG, and parameters carry secrets
# (registration tokens, password hashes): SQL is never logged, whatever the log level.
logging.getLogger("peewee").setLevel(logging.INFO)

SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("synchronous", "full"),
    ("foreign_keys", 1),
    ("busy_timeout", 5000),
    ("cache_size", -16000),
)


def utcnow() -> datetime.datetime:
    """Naive UTC, the form every timestamp column stores."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


def open_database(url: str) -> peewee.Database:
    """Make a pooled database from ``sqlite:///path`` or ``postgresql://user:pw@host:port/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path
        path = unquote(url.split("?", 1)[0][len("sqlite:///"):])
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # BEGIN IMMEDIATE: a transaction that reads before it writes must not deadlock on the
        # lock upgrade (SQLite answers "database is locked" at once instead of waiting).
        database = SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=30,
                                  check_same_thread=False, lock_type="IMMEDIATE")
        register_sqlite_functions(database)
        return database
    if parsed.scheme in ("postgresql", "postgres"):
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        options.setdefault("connect_timeout", "3")
        # after any options of the URL's own: the last -c of a setting wins
        options["options"] = f"{options.get('options', '')} -c synchronous_commit=on".strip()
        return PostgresDatabase(
            unquote(parsed.path.lstrip("/")) or "postgres",
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname, port=parsed.port or 5432, **options)
    raise ValueError(f"unsupported database URL scheme {parsed.scheme!r} "
                     "(use sqlite:///PATH or postgresql://USER@HOST:PORT/DB)")


def register_sqlite_functions(database: peewee.SqliteDatabase) -> None:
    """SQL functions SQLite lacks: ``casefold`` (its LOWER only folds ASCII)."""
    database.register_function(
        lambda text: text.casefold() if isinstance(text, str) else text, "casefold", 1,
        deterministic=True)


def bind(database: peewee.Database) -> None:
    """Point every model at ``database``."""
    database_proxy.initialize(database)


def is_postgres(database: peewee.Database | peewee.DatabaseProxy | None = None) -> bool:
    """Whether ``database`` (or the bound one) is PostgreSQL. A model's ``_meta.database``
    is the proxy: it is looked through, or PostgreSQL-only paths would silently never run."""
    db = database or database_proxy
    if isinstance(db, peewee.DatabaseProxy):
        db = db.obj
    return isinstance(db, peewee.PostgresqlDatabase)
