"""IML list arguments: ``parse`` validation and conversion, ``apply`` against real SQLite."""

import datetime

import peewee
import pytest

from manager.db.base import register_sqlite_functions
from manager.http.iml import query as q
from manager.http.iml.query import Filter, QueryError, parse

ALL = q.LOOKUPS
TYPES = {"name": "string", "size": "integer", "created": "datetime", "note": "string",
         "active": "boolean"}
FILTERING = {"name": ALL, "size": ALL, "created": ALL, "note": ALL, "active": ("exact",)}
ORDERING = ("name", "size", "created")


def parse_args(args, filtering=FILTERING, ordering=ORDERING):
    return parse(args, TYPES, filtering, ordering)


def refusal(args, **kwargs):
    with pytest.raises(QueryError) as info:
        parse_args(args, **kwargs)
    return info.value


# --- parse: filters --------------------------------------------------------------------


def test_no_arguments():
    assert parse_args({}) == q.ListQuery((), (), 20, 0)


def test_plain_field_means_exact():
    assert parse_args({"name": ["x"]}).filters == (Filter("name", "exact", ("x",)),)


def test_field_not_filterable():
    err = refusal({"secret__exact": ["x"]})
    assert err.param == "secret__exact"
    assert "secret" in err.message
    assert str(err) == f"secret__exact: {err.message}"


def test_lookup_not_allowed_on_field():
    err = refusal({"active__in": ["true"]})
    assert err.param == "active__in"
    assert "allowed: exact" in err.message


def test_unknown_lookup():
    assert refusal({"name__regex": ["^a"]}).param == "name__regex"


def test_in_accepts_repeated_values():
    lq = parse_args({"size__in": ["1", "2", "30"]})
    assert lq.filters == (Filter("size", "in", (1, 2, 30)),)


@pytest.mark.parametrize("param", ["name", "name__exact", "size__lt", "name__contains",
                                   "note__isnull"])
def test_other_lookups_refuse_repeats(param):
    assert refusal({param: ["1", "1"]}).param == param


def test_several_filters_are_kept():
    lq = parse_args({"name__startswith": ["a"], "size__gte": ["3"]})
    assert lq.filters == (Filter("name", "startswith", ("a",)), Filter("size", "gte", (3,)))


@pytest.mark.parametrize(("raw", "expected"), [
    ("12", 12), ("-3", -3), ("0", 0), (str(2**63 - 1), 2**63 - 1),
])
def test_integer_values(raw, expected):
    assert parse_args({"size": [raw]}).filters[0].values == (expected,)


@pytest.mark.parametrize("raw", ["1.5", "abc", "", str(2**63), str(-(2**63))])
def test_bad_integer_values(raw):
    assert refusal({"size__gt": [raw]}).param == "size__gt"


def test_bad_value_among_in_values():
    assert refusal({"size__in": ["1", "two"]}).param == "size__in"


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("True", True), ("1", True), ("yes", True),
    ("false", False), ("FALSE", False), ("0", False), ("no", False),
])
def test_boolean_values(raw, expected):
    assert parse_args({"active": [raw]}).filters[0].values == (expected,)


@pytest.mark.parametrize("raw", ["maybe", "", "2", "on"])
def test_bad_boolean_values(raw):
    assert refusal({"active": [raw]}).param == "active"


@pytest.mark.parametrize(("raw", "expected"), [
    ("2024-03-04T05:06:07", datetime.datetime(2024, 3, 4, 5, 6, 7)),
    ("2024-03-04", datetime.datetime(2024, 3, 4)),
    ("2024-03-04T05:06:07Z", datetime.datetime(2024, 3, 4, 5, 6, 7)),
    ("2024-03-04T05:06:07+02:00", datetime.datetime(2024, 3, 4, 3, 6, 7)),
    ("2024-03-04T01:00:00-05:30", datetime.datetime(2024, 3, 4, 6, 30)),
])
def test_datetime_values_become_naive_utc(raw, expected):
    (value,) = parse_args({"created__gte": [raw]}).filters[0].values
    assert value == expected
    assert value.tzinfo is None


@pytest.mark.parametrize("raw", ["yesterday", "2024-13-01", ""])
def test_bad_datetime_values(raw):
    assert refusal({"created__lt": [raw]}).param == "created__lt"


def test_string_with_nul_refused():
    assert refusal({"name": ["a\x00b"]}).param == "name"
    assert refusal({"name__in": ["ok", "a\x00b"]}).param == "name__in"


def test_text_lookup_with_nul_refused():
    assert refusal({"name__contains": ["a\x00b"]}).param == "name__contains"


def test_unknown_type_defaults_to_string():
    lq = parse({"other": ["5"]}, {}, {"other": ("exact",)}, ())
    assert lq.filters[0].values == ("5",)


def test_text_lookups_keep_the_raw_string():
    """Text lookups compare text even on an integer field: no conversion."""
    assert parse_args({"size__contains": ["1x"]}).filters[0].values == ("1x",)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("0", False), ("yes", True)])
def test_isnull_takes_booleans(raw, expected):
    assert parse_args({"size__isnull": [raw]}).filters == (Filter("size", "isnull", (expected,)),)


def test_isnull_refuses_non_booleans():
    assert refusal({"note__isnull": ["nothing"]}).param == "note__isnull"


def test_reserved_arguments_are_not_filters():
    args = {"format": ["json"], "limit": ["5"], "offset": ["10"], "order_by": ["name"],
            "dry_run": ["1"]}
    lq = parse_args(args, filtering={})
    assert lq == q.ListQuery((), (("name", False),), 5, 10)


# --- parse: ordering and paging --------------------------------------------------------


def test_order_by_direction_and_order_kept():
    lq = parse_args({"order_by": ["-size", "name", "-created"]})
    assert lq.order_by == (("size", True), ("name", False), ("created", True))


@pytest.mark.parametrize("value", ["note", "-note", "--size", "", "size,name"])
def test_order_by_only_allowed_fields(value):
    err = refusal({"order_by": [value]})
    assert err.param == "order_by"
    assert "allowed: name, size, created" in err.message


def test_order_by_with_no_ordering_declared():
    assert "allowed: none" in refusal({"order_by": ["name"]}, ordering=()).message


@pytest.mark.parametrize(("args", "limit", "offset"), [
    ({}, 20, 0),
    ({"limit": ["5"]}, 5, 0),
    ({"limit": ["0"]}, None, 0),
    ({"limit": [str(2**31 - 1)], "offset": [str(2**31 - 1)]}, 2**31 - 1, 2**31 - 1),
    ({"offset": ["40"]}, 20, 40),
    ({"limit": []}, 20, 0),
    ({"limit": ["5", "7"]}, 7, 0),
])
def test_limit_and_offset(args, limit, offset):
    lq = parse_args(args)
    assert (lq.limit, lq.offset) == (limit, offset)


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "", str(2**31)])
def test_bad_limit_and_offset(name, raw):
    err = refusal({name: [raw]})
    assert err.param == name


# --- apply against SQLite --------------------------------------------------------------


class Item(peewee.Model):
    name = peewee.CharField()
    size = peewee.IntegerField()
    created = peewee.DateTimeField()
    note = peewee.CharField(null=True)


def day(n):
    return datetime.datetime(2024, 1, 1) + datetime.timedelta(days=n)


ROWS = [
    # name, size, created, note
    ("alpha", 1, day(0), None),
    ("Alpha", 2, day(0), "first"),
    ("ALPHABET", 3, day(1), None),
    ("beta", 4, day(1), "b"),
    ("100%", 5, day(2), "pct"),
    ("%pre", 6, day(2), None),
    ("a_b", 7, day(3), "underscore"),
    ("axb", 8, day(3), None),
    ("a*b", 9, day(4), "star"),
    ("a?b", 10, day(4), None),
    ("[ab]", 11, day(5), "bracket"),
    ("back\\slash", 12, day(5), None),
]


@pytest.fixture(scope="module")
def items():
    database = peewee.SqliteDatabase(":memory:")
    register_sqlite_functions(database)
    database.bind([Item])
    database.connect()
    database.create_tables([Item])
    Item.insert_many(ROWS, fields=[Item.name, Item.size, Item.created, Item.note]).execute()
    yield Item
    database.close()


def select(items, args):
    lq = parse_args(args)
    query = q.apply(items.select(), lq, lambda name: getattr(items, name), postgres=False)
    if not lq.order_by:
        query = query.order_by(items.id)
    return [row.name for row in query]


@pytest.mark.parametrize(("args", "expected"), [
    ({"name": ["alpha"]}, ["alpha"]),
    ({"name__exact": ["ALPHA"]}, []),
    ({"size": ["3"]}, ["ALPHABET"]),
    ({"name__iexact": ["ALPHA"]}, ["alpha", "Alpha"]),
    ({"name__iexact": ["a_B"]}, ["a_b"]),
    ({"name__in": ["beta", "alpha", "nothing"]}, ["alpha", "beta"]),
    ({"size__in": ["12", "1"]}, ["alpha", "back\\slash"]),
    ({"size__lt": ["3"]}, ["alpha", "Alpha"]),
    ({"size__lte": ["3"]}, ["alpha", "Alpha", "ALPHABET"]),
    ({"size__gt": ["10"]}, ["[ab]", "back\\slash"]),
    ({"size__gte": ["10"]}, ["a?b", "[ab]", "back\\slash"]),
    ({"created__lt": ["2024-01-02T00:00:00Z"]}, ["alpha", "Alpha"]),
    ({"created__gte": ["2024-01-06T03:00:00+03:00"]}, ["[ab]", "back\\slash"]),
    ({"created": ["2024-01-02"]}, ["ALPHABET", "beta"]),
    ({"name__contains": ["lph"]}, ["alpha", "Alpha"]),
    ({"name__contains": ["LPH"]}, ["ALPHABET"]),
    ({"name__icontains": ["LpH"]}, ["alpha", "Alpha", "ALPHABET"]),
    ({"name__startswith": ["Al"]}, ["Alpha"]),
    ({"name__startswith": ["al"]}, ["alpha"]),
    ({"name__endswith": ["ET"]}, ["ALPHABET"]),
    ({"name__endswith": ["et"]}, []),
    ({"name__endswith": ["ta"]}, ["beta"]),
    ({"note__isnull": ["true"]},
     ["alpha", "ALPHABET", "%pre", "axb", "a?b", "back\\slash"]),
    ({"note__isnull": ["false"]}, ["Alpha", "beta", "100%", "a_b", "a*b", "[ab]"]),
    ({"name__startswith": ["a"], "size__gt": ["7"]}, ["axb", "a*b", "a?b"]),
])
def test_lookups(items, args, expected):
    assert select(items, args) == expected


@pytest.mark.parametrize(("args", "expected"), [
    ({"name__contains": ["%"]}, ["100%", "%pre"]),
    ({"name__startswith": ["%"]}, ["%pre"]),
    ({"name__endswith": ["%"]}, ["100%"]),
    ({"name__icontains": ["%"]}, ["100%", "%pre"]),
    ({"name__contains": ["_"]}, ["a_b"]),
    ({"name__icontains": ["A_B"]}, ["a_b"]),
    ({"name__contains": ["*"]}, ["a*b"]),
    ({"name__startswith": ["a*"]}, ["a*b"]),
    ({"name__icontains": ["*"]}, ["a*b"]),
    ({"name__contains": ["?"]}, ["a?b"]),
    ({"name__endswith": ["?b"]}, ["a?b"]),
    ({"name__contains": ["["]}, ["[ab]"]),
    ({"name__contains": ["[ab]"]}, ["[ab]"]),
    ({"name__startswith": ["[a"]}, ["[ab]"]),
    ({"name__endswith": ["]"]}, ["[ab]"]),
    ({"name__contains": ["\\"]}, ["back\\slash"]),
    ({"name__icontains": ["\\"]}, ["back\\slash"]),
    ({"name__icontains": ["K\\S"]}, ["back\\slash"]),
    ({"name__endswith": ["\\"]}, []),
    ({"name__iexact": ["%"]}, []),
])
def test_wildcards_match_literally(items, args, expected):
    assert select(items, args) == expected


def test_order_by(items):
    assert select(items, {"order_by": ["-size"]}) == [r[0] for r in reversed(ROWS)]


def test_multiple_order_by_in_order(items):
    names = select(items, {"order_by": ["-created", "size"], "size__lt": ["7"]})
    assert names == ["100%", "%pre", "ALPHABET", "beta", "alpha", "Alpha"]
    names = select(items, {"order_by": ["created", "-size"], "size__lt": ["7"]})
    assert names == ["Alpha", "alpha", "beta", "ALPHABET", "%pre", "100%"]


def test_apply_leaves_paging_to_the_caller(items):
    lq = parse_args({"limit": ["1"], "offset": ["2"]})
    query = q.apply(items.select(), lq, lambda name: getattr(items, name), postgres=False)
    assert query.count() == len(ROWS)


def test_iexact_non_ascii_on_sqlite():
    class Person(peewee.Model):
        name = peewee.CharField()

    database = peewee.SqliteDatabase(":memory:")
    register_sqlite_functions(database)
    register_sqlite_functions(database)
    database.bind([Person])
    with database:
        database.create_tables([Person])
        Person.create(name="Émile")
        assert select(Person, {"name__iexact": ["Émile"]}) == ["Émile"]
