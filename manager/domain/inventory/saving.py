"""Saving nodes: create and update any number in one transaction, all or nothing.

Every refusal names the object and field at fault (``objects[12].xname: …`` in a bulk
request). The work is a few statements per thousand nodes whatever the mix of new and
changed ones — lookups by ``IN``, multi-row ``INSERT``s, batched ``UPDATE``s — so an
inventory of 10,000 nodes imports in a couple of seconds. Runs on a DB thread.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import peewee

from manager.db.base import is_postgres, utcnow
from manager.db.hosts import Host
from manager.db.inventory import Node, NodeGroup, NodeMac, PowerControlDeviceOutlet
from manager.domain import hosts
from manager.domain.accounts import Principal
from manager.domain.errors import ValidationError
from manager.domain.inventory import checks
from manager.domain.inventory.lookups import among
from manager.domain.inventory.nodes import CHECKS, WHAT, lists_of, xname_key
from manager.domain.inventory.power import outlet_links
from manager.domain.permissions import require_administrator

MAX_BULK = 50_000
MAX_ERRORS_SHOWN = 10
CHUNK = 500  # rows per statement (SQLite allows 32,766 parameters)
COLUMNS = ("xname", "xname_key", "hostname", "role", "sub_role", "enabled", "architecture",
           "outlet", "host")
DEFAULTS = {"xname": None, "hostname": None, "role": "Compute", "sub_role": "",
            "enabled": True, "architecture": "x86_64", "outlet": None, "host": None}
UNIQUE = ("xname", "hostname", "outlet")
LISTS = ("groups", "macs")


@dataclasses.dataclass
class _Change:
    index: int
    fields: dict[str, Any]
    node_id: int | None = None  # the node it updates; None creates one
    final: dict[str, Any] = dataclasses.field(default_factory=dict)
    lists: tuple[str, ...] = ()  # the lists ("groups", "macs") to write anew


@dataclasses.dataclass(frozen=True)
class Saved:
    ids: list[int]  # in the order of the request's objects
    created: int
    updated: int
    unchanged: int  # existing nodes the request describes as they are (left untouched)


class _Errors:
    """Refusals collected over a request: ``{field: message}`` for one object, or
    ``{"objects": "objects[12].xname: …; …"}`` for a bulk request."""

    def __init__(self, bulk: bool) -> None:
        self.bulk = bulk
        self.found: list[tuple[int, str, str]] = []

    def add(self, index: int, field: str, message: str) -> None:
        self.found.append((index, field, message))

    def raise_if_any(self) -> None:
        if not self.found:
            return
        if not self.bulk:
            raise ValidationError({field: message for _, field, message in self.found})
        shown = [f"objects[{i}].{field}: {message}" if field else f"objects[{i}]: {message}"
                 for i, field, message in sorted(self.found)[:MAX_ERRORS_SHOWN]]
        more = len(self.found) - MAX_ERRORS_SHOWN
        raise ValidationError({"objects": "; ".join(shown) + (f"; and {more} more" if more > 0
                                                              else "")})


def save(principal: Principal, objects: Sequence[Any], mode: str = "upsert") -> Saved:
    """Create and update nodes, all or none. ``mode``: "create" (every object is a new
    node), "update" (every object has its ``id``) or "upsert" (an object with an ``id``
    updates that node; else one whose xname — or, without an xname, hostname — is known
    updates that node; any other creates one). Only the fields an object gives change;
    ``groups`` and ``macs`` replace the node's lists."""
    require_administrator(principal, WHAT)
    if len(objects) > MAX_BULK:
        raise ValidationError({"objects": f"At most {MAX_BULK} nodes per request."})
    errors = _Errors(bulk=mode == "upsert")
    changes = _parse(objects, errors)
    errors.raise_if_any()
    rows = _resolve(changes, mode, errors)
    errors.raise_if_any()
    _merge(changes, rows, errors)
    _check_unique(changes, rows, errors)
    _check_references(changes, errors)
    errors.raise_if_any()
    with Node._meta.database.atomic():
        saved = _write(changes, rows)
    if any("outlet" in change.fields for change in changes):
        outlet_links.bump()
    return saved


def _parse(objects: Sequence[Any], errors: _Errors) -> list[_Change]:
    changes = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            errors.add(i, "", "Must be an object.")
            continue
        values = dict(obj)
        node_id = values.pop("id", None)
        if node_id is not None and (isinstance(node_id, bool) or not isinstance(node_id, int)):
            errors.add(i, "id", "Must be an integer.")
        fields, bad = checks.clean(values, CHECKS)
        for field, message in bad.items():
            errors.add(i, field, message)
        changes.append(_Change(i, fields, node_id))
    return changes


def _resolve(changes: list[_Change], mode: str, errors: _Errors) -> dict[int, dict]:
    """Find the nodes the changes update; their current rows by id."""
    rows = _rows(Node.id, [c.node_id for c in changes if c.node_id is not None])
    for c in changes:
        if c.node_id is not None and c.node_id not in rows:
            errors.add(c.index, "id", f"No node {c.node_id}.")
        elif c.node_id is None and mode == "update":
            errors.add(c.index, "id", "Required to update a node.")
        elif c.node_id is not None and mode == "create":
            errors.add(c.index, "id", "Not allowed when creating a node.")
    if mode == "upsert":
        for field in ("xname", "hostname"):
            pending = [c for c in changes if c.node_id is None and c.fields.get(field)
                       and (field == "xname" or not c.fields.get("xname"))]
            by_value = {r[field]: r for r in _rows(getattr(Node, field),
                                                   [c.fields[field] for c in pending]).values()}
            for c in pending:
                if c.fields[field] in by_value:
                    c.node_id = by_value[c.fields[field]]["id"]
                    rows[c.node_id] = by_value[c.fields[field]]
    first: dict[int, int] = {}
    for c in changes:
        if c.node_id is not None and first.setdefault(c.node_id, c.index) != c.index:
            errors.add(c.index, "", f"The same node as objects[{first[c.node_id]}].")
    return rows


def _rows(column: peewee.Field, values: list[Any]) -> dict[int, dict]:
    """Current rows (``COLUMNS`` and id) of the nodes whose ``column`` is in ``values``."""
    if not values:
        return {}
    fields = [Node.id, *(getattr(Node, c) for c in COLUMNS)]
    return {row["id"]: row for row in Node.select(*fields).where(among(column, set(values)))
            .dicts()}


def _merge(changes: list[_Change], rows: dict[int, dict], errors: _Errors) -> None:
    for c in changes:
        base = rows[c.node_id] if c.node_id is not None else DEFAULTS
        final = {k: v for k, v in {**base, **c.fields}.items() if k in DEFAULTS}
        if final["xname"] is None and final["hostname"] is None:
            errors.add(c.index, "xname", "A node needs an xname or a hostname.")
        final["xname_key"] = xname_key(final["xname"], final["hostname"])
        c.final = final


def _check_unique(changes: list[_Change], rows: dict[int, dict], errors: _Errors) -> None:
    """xname, hostname, outlet and MACs each belong to one node, in the request and after."""
    touched = {c.node_id for c in changes if c.node_id is not None}
    for field in UNIQUE:
        claims = [(c, c.final[field]) for c in changes if c.final[field] is not None]
        _claims(field, claims, _owners(getattr(Node, field), Node.id, [v for _, v in claims]),
                touched, errors)
    with_macs = [c for c in changes if "macs" in c.fields]
    claims = [(c, mac) for c in with_macs for mac in c.fields["macs"]]
    replaced = {c.node_id for c in with_macs if c.node_id is not None}
    _claims("macs", claims, _owners(NodeMac.mac, NodeMac.node, [v for _, v in claims]),
            replaced, errors)


def _owners(column: peewee.Field, owner: peewee.Field, values: list[Any]) -> dict[Any, int]:
    """The node that has each of ``values`` in ``column`` (where one has it)."""
    if not values:
        return {}
    return dict(column.model.select(column, owner).where(among(column, set(values))).tuples())


def _claims(field: str, claims: list[tuple[_Change, Any]], owners: dict[Any, int],
            released: set[int], errors: _Errors) -> None:
    """Refuse a value claimed twice in the request, or owned by a node the request leaves
    alone (a node in ``released`` gives up its values to whoever claims them)."""
    first: dict[Any, _Change] = {}
    for c, value in claims:
        other = first.setdefault(value, c)
        owner = owners.get(value)
        if other is not c:
            errors.add(c.index, field, f"{value} is also given to objects[{other.index}].")
        elif owner is not None and owner != c.node_id and owner not in released:
            errors.add(c.index, field, f"{value} belongs to node {owner}.")


def _check_references(changes: list[_Change], errors: _Errors) -> None:
    for field, model, extra in (("outlet", PowerControlDeviceOutlet, None),
                                ("host", Host, Host.state != hosts.REMOVED)):
        wanted = {c.fields[field] for c in changes if c.fields.get(field) is not None}
        found: set[int] = set()
        if wanted:
            query = model.select(model.id).where(among(model.id, wanted))
            found = {i for (i,) in (query.where(extra) if extra is not None else query).tuples()}
        for c in changes:
            if c.fields.get(field) is not None and c.fields[field] not in found:
                errors.add(c.index, field, f"No {field} {c.fields[field]}.")


# --- writing ------------------------------------------------------------------------------

def _write(changes: list[_Change], rows: dict[int, dict]) -> Saved:
    now = utcnow()
    creates = [c for c in changes if c.node_id is None]
    for c in creates:
        c.lists = tuple(f for f in LISTS if f in c.fields)
    updates = _changed([c for c in changes if c.node_id is not None], rows)
    _release_unique(updates, rows)
    _execute_many(_update_sql(), [[_db(col, c.final[col]) for col in COLUMNS] + [now, c.node_id]
                                  for c in updates])
    _insert_many(Node, [*COLUMNS, "created_at", "modified_at"],
                 [[_db(col, c.final[col]) for col in COLUMNS] + [now, now] for c in creates])
    _find_created(creates)
    _replace_lists(NodeGroup, "name", "groups", updates, creates)
    _replace_lists(NodeMac, "mac", "macs", updates, creates)
    return Saved([c.node_id for c in changes], len(creates), len(updates),
                 len(changes) - len(creates) - len(updates))


def _changed(updates: list[_Change], rows: dict[int, dict]) -> list[_Change]:
    """The updates that change something (re-importing an inventory touches nothing else),
    each with the lists it changes."""
    groups, macs = lists_of([c.node_id for c in updates if set(LISTS) & set(c.fields)])
    changed = []
    for c in updates:
        # groups are a set (rendered sorted); MACs a list (rendered as given)
        now = {"groups": set(groups.get(c.node_id, ())), "macs": macs.get(c.node_id)}
        given = {"groups": set(c.fields.get("groups", ())), "macs": c.fields.get("macs")}
        c.lists = tuple(f for f in LISTS if f in c.fields and given[f] != now[f])
        if c.lists or any(rows[c.node_id][col] != c.final[col] for col in COLUMNS):
            changed.append(c)
    return changed


def _release_unique(updates: list[_Change], rows: dict[int, dict]) -> None:
    """Clear the unique values the updated nodes give up first, so that nodes can swap
    them (an xname, a hostname, an outlet) within one request."""
    for field in UNIQUE:
        moving = [c.node_id for c in updates
                  if rows[c.node_id][field] not in (None, c.final[field])]
        if moving:
            Node.update({getattr(Node, field): None}).where(among(Node.id, moving)).execute()


def _db(column: str, value: Any) -> Any:
    return getattr(Node, column).db_value(value)


@functools.lru_cache(maxsize=4)
def _update_sql_for(param: str) -> str:
    assignments = ", ".join(f'"{getattr(Node, c).column_name}" = {param}'
                            for c in (*COLUMNS, "modified_at"))
    return f'UPDATE "{Node._meta.table_name}" SET {assignments} WHERE "id" = {param}'


def _update_sql() -> str:
    return _update_sql_for(Node._meta.database.param)


def _execute_many(sql: str, params: list[list[Any]]) -> None:
    if not params:
        return
    cursor = Node._meta.database.cursor()
    if is_postgres():  # one round trip per page of rows, not per row
        from psycopg2.extras import execute_batch
        execute_batch(cursor, sql, params, page_size=CHUNK)
    else:
        cursor.executemany(sql, params)


def _insert_many(model: type[peewee.Model], names: list[str], rows: list[list[Any]]) -> None:
    """Multi-row INSERTs, ``CHUNK`` rows a statement (peewee builds each row's SQL anew,
    which costs more than the insert)."""
    if not rows:
        return
    database = model._meta.database
    columns = ", ".join(f'"{model._meta.fields[n].column_name}"' for n in names)
    one = "(" + ", ".join([database.param] * len(names)) + ")"
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        sql = (f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES '
               + ", ".join([one] * len(chunk)))
        database.execute_sql(sql, [v for row in chunk for v in row])


def _find_created(creates: list[_Change]) -> None:
    """The ids of the new nodes, by their xname (or hostname): both are unique."""
    for field in ("xname", "hostname"):
        pending = [c for c in creates if c.node_id is None and c.final[field] is not None]
        ids = _owners(getattr(Node, field), Node.id, [c.final[field] for c in pending])
        for c in pending:
            c.node_id = ids[c.final[field]]


def _replace_lists(model: type[peewee.Model], column: str, field: str,
                   updates: list[_Change], creates: list[_Change]) -> None:
    """Replace the groups (or MACs) of the nodes whose change gives new ones."""
    replaced = [c.node_id for c in updates if field in c.lists]
    if replaced:
        model.delete().where(among(model.node, replaced)).execute()
    rows = [[c.node_id, value] for c in [*updates, *creates] if field in c.lists
            for value in c.fields[field]]
    _insert_many(model, ["node", column], rows)
