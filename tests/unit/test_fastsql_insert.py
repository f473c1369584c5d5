"""Hand-written INSERTs store what peewee's own INSERT would."""

from __future__ import annotations

import datetime
import json

import peewee
import pytest

from manager.db import fastsql


class JSONField(peewee.TextField):
    def db_value(self, value):
        return json.dumps(value)


database = peewee.SqliteDatabase(":memory:")


class Thing(peewee.Model):
    name = peewee.CharField(default="")
    count = peewee.IntegerField(null=True)
    at = peewee.DateTimeField(null=True)
    doc = JSONField(null=True)
    made = peewee.DateTimeField(default=lambda: datetime.datetime(2026, 1, 2, 3, 4, 5))

    class Meta:
        database = database


@pytest.fixture(autouse=True)
def tables():
    database.connect(reuse_if_open=True)
    database.create_tables([Thing])
    yield
    database.drop_tables([Thing])


ROWS = [
    {"name": "plain", "count": 3, "at": datetime.datetime(2026, 5, 6, 7, 8, 9), "doc": {"a": 1}},
    {"name": 42, "count": True, "at": "2026-05-06 07:08:09", "doc": None},  # converted
    {"name": b"bytes", "count": "7", "at": None, "doc": "text"},
]


def test_rows_are_stored_as_peewee_stores_them():
    fastsql.insert(Thing, ROWS)
    ours = list(Thing.select().order_by(Thing.id).dicts())
    Thing.delete().execute()
    Thing.insert_many(ROWS).execute()
    theirs = list(Thing.select().order_by(Thing.id).dicts())
    assert [{k: v for k, v in r.items() if k != "id"} for r in ours] == \
        [{k: v for k, v in r.items() if k != "id"} for r in theirs]
    # a field with a conversion of its own converts even None ("null" in JSON)
    raw = database.execute_sql("SELECT doc FROM thing ORDER BY id").fetchall()
    assert raw == [('{"a": 1}',), ("null",), ('"text"',)]


def test_only_peewee_conversions_that_keep_a_type_are_skipped():
    fields = Thing._meta.fields
    assert fastsql._kept_type(fields["name"]) is str
    assert fastsql._kept_type(fields["count"]) is int
    assert fastsql._kept_type(fields["at"]) is datetime.datetime
    assert fastsql._kept_type(fields["doc"]) is None
