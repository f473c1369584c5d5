"""Django-style list arguments of the IML API: filters, ``order_by``, ``limit``, ``offset``.

``parse`` checks a request's arguments against what a resource allows and converts values
to the field's type (every refusal is a ``QueryError`` naming the argument); ``apply`` turns
the result into a Peewee query. Text lookups escape their wildcards, so a filter value is
always matched literally.
"""

from __future__ import annotations

import dataclasses
import datetime
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import peewee

LOOKUPS = ("exact", "iexact", "in", "lt", "gt", "lte", "gte", "contains", "icontains",
           "startswith", "endswith", "isnull")
RESERVED = frozenset({"format", "limit", "offset", "order_by", "dry_run"})
DEFAULT_LIMIT = 20
MAX_INT = 2**31 - 1
MAX_ID = 2**63 - 1  # the largest BIGINT, and so the largest id or integer filter value


class QueryError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclasses.dataclass(frozen=True)
class Filter:
    field: str
    lookup: str
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class ListQuery:
    filters: tuple[Filter, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    limit: int | None = DEFAULT_LIMIT  # None: everything
    offset: int = 0


def parse(args: Mapping[str, Sequence[str]], types: Mapping[str, str],
          filtering: Mapping[str, Sequence[str]], ordering: Sequence[str]) -> ListQuery:
    """Validate list arguments; ``types`` maps filterable names to their field type."""
    filters = []
    for param, values in args.items():
        if param in RESERVED:
            continue
        field, _, lookup = param.partition("__")
        lookup = lookup or "exact"
        if field not in filtering:
            raise QueryError(param, f"Filtering on '{field}' is not allowed.")
        if lookup not in filtering[field]:
            allowed = ", ".join(filtering[field])
            raise QueryError(param, f"Lookup '{lookup}' is not allowed on '{field}' (allowed: {allowed}).")
        if lookup != "in" and len(values) > 1:
            raise QueryError(param, "Repeat only '__in' arguments.")
        converted = tuple(_convert(param, types.get(field, "string"), lookup, v) for v in values)
        filters.append(Filter(field, lookup, converted))
    return ListQuery(tuple(filters), _parse_order(args.get("order_by", ()), ordering),
                     _parse_limit(args), _parse_int(args, "offset", 0))


def _parse_order(values: Sequence[str], ordering: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    result = []
    for value in values:
        name = value.removeprefix("-")
        if name not in ordering:
            allowed = ", ".join(ordering) or "none"
            raise QueryError("order_by", f"Ordering by '{name}' is not allowed (allowed: {allowed}).")
        result.append((name, value.startswith("-")))
    return tuple(result)


def _parse_limit(args: Mapping[str, Sequence[str]]) -> int | None:
    limit = _parse_int(args, "limit", DEFAULT_LIMIT)
    return None if limit == 0 else limit


def _parse_int(args: Mapping[str, Sequence[str]], name: str, default: int) -> int:
    values = args.get(name)
    if not values:
        return default
    if not re.fullmatch(r"-?[0-9]+", values[-1]):
        raise QueryError(name, f"'{values[-1]}' is not an integer.")
    # past 4,300 digits int() raises ValueError: anything longer than MAX_INT is out of range
    too_long = len(values[-1].lstrip("-").lstrip("0")) > len(str(MAX_INT))
    value = -1 if too_long else int(values[-1])
    if not 0 <= value <= MAX_INT:
        raise QueryError(name, f"Must be between 0 and {MAX_INT}.")
    return value


def _convert(param: str, type_: str, lookup: str, raw: str) -> Any:
    try:
        if lookup == "isnull":
            return _boolean(raw)
        if lookup in ("contains", "icontains", "startswith", "endswith", "iexact"):
            return _string(raw)
        return CONVERTERS.get(type_, _string)(raw)
    except ValueError as exc:
        raise QueryError(param, f"Invalid value '{raw}': {exc}") from None


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _integer(raw: str) -> int:
    value = int(raw)
    if abs(value) > MAX_ID:
        raise ValueError("out of range")
    return value


_RELATED_URI = re.compile(r"/api/[a-z_]+/([0-9]+)/?")


def _related(raw: str) -> int:
    """A related object's id, given as the id or its URI (a text value would reach an
    integer column: PostgreSQL refuses the query)."""
    found = _RELATED_URI.fullmatch(raw)
    value = _integer(found.group(1) if found else raw)
    if not 0 < value <= MAX_ID:
        raise ValueError("expected an id or a URI")
    return value


def _datetime(raw: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(raw)
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value


def _string(raw: str) -> str:
    if "\x00" in raw:
        raise ValueError("NUL characters are not allowed")
    return raw


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "integer": _integer, "boolean": _boolean, "datetime": _datetime, "string": _string,
    "related": _related,
}


def apply(query: peewee.ModelSelect, lq: ListQuery, column_for: Callable[[str], Any],
          postgres: bool) -> peewee.ModelSelect:
    """Add the filters and ordering of ``lq`` to ``query`` (not the page bounds)."""
    for f in lq.filters:
        query = query.where(_expression(column_for(f.field), f, postgres))
    return query.order_by(*[column_for(name).desc() if desc else column_for(name).asc()
                            for name, desc in lq.order_by])


_COMPARISONS = {"exact": operator.eq, "lt": operator.lt, "gt": operator.gt,
                "lte": operator.le, "gte": operator.ge}


def _expression(column: Any, f: Filter, postgres: bool) -> Any:
    value = f.values[0] if f.values else None
    if f.lookup in _COMPARISONS:
        return _COMPARISONS[f.lookup](column, value)
    if f.lookup == "in":
        return column.in_(list(f.values))
    if f.lookup == "isnull":
        return column.is_null(value)
    if f.lookup == "iexact":
        return _folded(column, postgres) == _fold(value, postgres)
    before = "" if f.lookup in ("startswith",) else "%"
    after = "" if f.lookup in ("endswith",) else "%"
    if f.lookup == "icontains":
        pattern = f"%{_escape_like(_fold(value, postgres))}%"
        return _like(_folded(column, postgres), "LIKE", pattern)
    if postgres:
        return _like(column, "LIKE", f"{before}{_escape_like(value)}{after}")
    # SQLite's LIKE ignores case; GLOB is its case-sensitive match.
    glob_before, glob_after = before.replace("%", "*"), after.replace("%", "*")
    return peewee.Expression(column, "GLOB", f"{glob_before}{_escape_glob(value)}{glob_after}")


def _folded(column: Any, postgres: bool) -> Any:
    """Case-fold a column: PostgreSQL's LOWER knows Unicode; SQLite's only ASCII, so SQLite
    uses the ``casefold`` function ``manager.db.base`` registers on every connection."""
    return peewee.fn.LOWER(column) if postgres else peewee.fn.casefold(column)


def _fold(value: str, postgres: bool) -> str:
    return value.lower() if postgres else value.casefold()


def _like(column: Any, op: str, pattern: str) -> Any:
    return peewee.NodeList((column, peewee.SQL(op), pattern, peewee.SQL("ESCAPE '\\'")))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _escape_glob(value: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in value)
