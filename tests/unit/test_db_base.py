"""Which database is bound: PostgreSQL-only paths must see through the models' proxy."""

from __future__ import annotations

import peewee

from manager.db.base import is_postgres


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
