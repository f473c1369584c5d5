"""The engine's per-step statements, prepared once per PostgreSQL connection."""

from __future__ import annotations

import peewee
import pytest

from manager.db import fastsql
from manager.db.base import open_database


@pytest.fixture
def pg(pg_items):
    return pg_items


def _prepared_names(database: peewee.Database) -> list[str]:
    return [n for (n,) in database.execute_sql("SELECT name FROM pg_prepared_statements")]


def test_a_statement_is_prepared_once_per_connection_and_runs_as_execute(pg):
    text = "INSERT INTO item (id, name) VALUES (%s, %s)"
    first = fastsql.prepared(pg, text)
    assert first.startswith("EXECUTE shp_") and first.endswith("(%s, %s)")
    assert fastsql.prepared(pg, text) == first
    for n in range(3):
        pg.execute_sql(first, (n, f"it's {n}"))  # quoting is the driver's, as before
    assert len(_prepared_names(pg)) == 1
    rows = pg.execute_sql(fastsql.prepared(pg, "SELECT name FROM item WHERE id = %s"), (2,))
    assert rows.fetchall() == [("it's 2",)]
    assert len(_prepared_names(pg)) == 2


def test_a_rolled_back_transaction_keeps_the_statement_and_a_new_connection_prepares_again(pg):
    text = "SELECT count(*) FROM item WHERE id > %s"
    with pytest.raises(peewee.IntegrityError), pg.atomic():
        pg.execute_sql(fastsql.prepared(pg, text), (0,))
        pg.execute_sql("INSERT INTO item (id) VALUES (1), (1)")
    assert pg.execute_sql(fastsql.prepared(pg, text), (0,)).fetchone() == (0,)
    pg.close()
    pg.connect()
    assert _prepared_names(pg) == []
    assert pg.execute_sql(fastsql.prepared(pg, text), (-1,)).fetchone() == (0,)


def test_one_row_inserts_are_prepared_and_many_row_inserts_are_not(pg):
    class Item(peewee.Model):
        name = peewee.TextField(null=True)

        class Meta:
            database = pg
            table_name = "item"

    one = fastsql.insert_statements(Item, [{"id": 7, "name": "a"}], prepare=True)
    many = fastsql.insert_statements(Item, [{"id": 8, "name": "b"}, {"id": 9, "name": "c"}],
                                     prepare=True)
    assert one[0][0].startswith("EXECUTE ") and many[0][0].startswith("INSERT ")
    fastsql.execute_together(pg, [*one, *many])
    assert [r for (r,) in pg.execute_sql("SELECT id FROM item ORDER BY id")] == [7, 8, 9]


def test_sqlite_runs_the_text_itself(tmp_path):
    database = open_database(f"sqlite:///{tmp_path}/s.db")
    text = "SELECT ?"
    assert fastsql.prepared(database, text) == text
