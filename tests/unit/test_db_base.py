"""Which database is bound: PostgreSQL-only paths must see through the models' proxy."""

from __future__ import annotations

import peewee

from manager.db.base import is_postgres, open_database


def test_a_proxy_bound_to_postgresql_is_postgresql():
    proxy = peewee.DatabaseProxy()
    proxy.initialize(peewee.PostgresqlDatabase("shepherd"))
    assert is_postgres(proxy)
    assert is_postgres(proxy.obj)


def test_sqlite_is_not_postgresql_directly_or_through_a_proxy():
    proxy = peewee.DatabaseProxy()
    proxy.initialize(peewee.SqliteDatabase(":memory:"))
    assert not is_postgres(proxy)
    assert not is_postgres(proxy.obj)


def test_postgresql_sessions_commit_synchronously_after_the_urls_own_options():
    database = open_database("postgresql://shepherd@db.example:5433/shepherd"
                             "?options=-c%20statement_timeout%3D5000%20-c%20synchronous_commit%3Doff")
    assert database.connect_params["options"] == (
        "-c statement_timeout=5000 -c synchronous_commit=off -c synchronous_commit=on")
    assert open_database("postgresql://db.example/s").connect_params["options"] == (
        "-c synchronous_commit=on")
