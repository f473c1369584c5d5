"""Nodes: every machine Shepherd knows, by xname and/or hostname, with its role, groups, MAC
addresses, architecture, power outlet and (when one runs there) its agent's host.

Here: what a node's fields may hold, reading groups and MACs for a page of nodes, and the
node a registered compute agent becomes or is linked to (``attach_registered_host``);
creating and updating nodes, one or 10,000 at a time, is ``saving``.

Roles and sub-roles are HSM's (the ones BOS limits name), matched regardless of case and
stored as HSM writes them ("Compute", "LNETRouter"). Every function runs on a DB thread.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import peewee

from manager.db.base import utcnow
from manager.db.hosts import Host
from manager.db.inventory import Node, NodeGroup, NodeMac
from manager.domain import hosts
from manager.domain.accounts import Principal
from manager.domain.errors import NotFound
from manager.domain.inventory import checks
from manager.domain.inventory.lookups import among
from manager.domain.permissions import require_administrator

log = logging.getLogger("shepherd.inventory")

ROLES = ("Compute", "Service", "System", "Application", "Storage", "Management")
SUB_ROLES = ("Worker", "Master", "Storage", "UAN", "Gateway", "LNETRouter", "Visualization",
             "UserDefined")
ARCHITECTURES = ("x86_64", "aarch64", "ppc64le", "s390x", "riscv64")
XNAME_RE = re.compile(r"x0*(\d{1,4})c0*(\d{1,4})s0*(\d{1,4})b0*(\d{1,4})n0*(\d{1,4})",
                      re.IGNORECASE)
GROUP_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
MAC_RE = re.compile(r"[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}|"
                    r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}", re.IGNORECASE)
MAX_GROUPS = 100
MAX_MACS = 16
WHAT = "change the node inventory"


# --- field checks ---------------------------------------------------------------------------

def check_xname(value: Any) -> str | None:
    """A node's xname, x<cabinet>c<chassis>s<slot>b<bmc>n<node>, written as HSM writes it
    (lower case, no leading zeros); None (or "") for a node without one."""
    if value is None or value == "":
        return None
    match = XNAME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise checks.Invalid("Not a node xname: x<cabinet>c<chassis>s<slot>b<bmc>n<node>, "
                             "e.g. x3000c0s19b1n0.")
    return "x{}c{}s{}b{}n{}".format(*(int(n) for n in match.groups()))


def check_hostname(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not hosts.FQDN_RE.match(value):
        raise checks.Invalid("Not a valid host name.")
    return value


def check_groups(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise checks.Invalid("Must be a list of group names.")
    name = checks.text(64, GROUP_PATTERN, "letters, digits and _.- (not first)", blank=False)
    groups = list(dict.fromkeys(name(g) for g in value))
    if len(groups) > MAX_GROUPS:
        raise checks.Invalid(f"At most {MAX_GROUPS} groups.")
    return groups


def check_macs(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise checks.Invalid("Must be a list of MAC addresses.")
    macs = list(dict.fromkeys(normal_mac(m) for m in value))
    if len(macs) > MAX_MACS:
        raise checks.Invalid(f"At most {MAX_MACS} MAC addresses.")
    return macs


def normal_mac(value: Any) -> str:
    """``aa:bb:cc:dd:ee:ff`` from any usual spelling; a unicast, non-zero address only."""
    if not isinstance(value, str) or not MAC_RE.fullmatch(value):
        raise checks.Invalid(f"Not a MAC address: {str(value)[:40]!r} (e.g. 52:54:00:12:34:56).")
    digits = re.sub(r"[^0-9a-f]", "", value.lower())
    if int(digits[:2], 16) & 1 or digits == "0" * 12:
        raise checks.Invalid(f"{value!r} is a multicast or null address, not a node's.")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def _reference(value: Any) -> int | None:
    return None if value is None else checks.integer(1, 2**63 - 1)(value)


CHECKS: dict[str, checks.Check] = {
    "xname": check_xname,
    "hostname": check_hostname,
    "role": checks.choice(ROLES),
    "sub_role": lambda v: "" if v in ("", None) else checks.choice(SUB_ROLES)(v),
    "groups": check_groups,
    "enabled": checks.boolean,
    "macs": check_macs,
    "architecture": checks.choice(ARCHITECTURES),
    "outlet": _reference,
    "host": _reference,
}


def canonical_role(value: str) -> str:
    """A role as stored, for filters: "compute" → "Compute" (unknown values unchanged)."""
    return next((r for r in ROLES if r.lower() == value.lower()), value)


def canonical_sub_role(value: str) -> str:
    return next((r for r in SUB_ROLES if r.lower() == value.lower()), value)


def xname_key(xname: str | None, hostname: str | None) -> str:
    """The sort key ``order_by=xname`` uses: numbers zero-padded, nodes without an xname
    after the others, by hostname."""
    if xname is None:
        return "z" + (hostname or "")
    numbers = XNAME_RE.fullmatch(xname).groups()
    return "x{:0>4}c{:0>4}s{:0>4}b{:0>4}n{:0>4}".format(*numbers)


# --- reading, deleting ------------------------------------------------------------------------

def lists_of(node_ids: list[int]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Groups (sorted) and MACs (as given) of each node."""
    groups: dict[int, list[str]] = {i: [] for i in node_ids}
    macs: dict[int, list[str]] = {i: [] for i in node_ids}
    if not node_ids:
        return groups, macs
    for node_id, name in (NodeGroup.select(NodeGroup.node, NodeGroup.name)
                          .where(among(NodeGroup.node, node_ids)).tuples()):
        groups[node_id].append(name)
    for node_id, mac in (NodeMac.select(NodeMac.node, NodeMac.mac)
                         .where(among(NodeMac.node, node_ids)).order_by(NodeMac.id).tuples()):
        macs[node_id].append(mac)
    for names in groups.values():
        names.sort()  # here, not in SQL: a database's collation may order otherwise
    return groups, macs


def live_hosts(host_ids: list[int]) -> set[int]:
    """Those of ``host_ids`` that are not removed: a node of a removed host has no host."""
    if not host_ids:
        return set()
    return {i for (i,) in Host.select(Host.id).where(among(Host.id, set(host_ids)),
                                                     Host.state != hosts.REMOVED).tuples()}


def delete(principal: Principal, node_id: int) -> None:
    require_administrator(principal, WHAT)
    if not Node.delete().where(Node.id == node_id).execute():
        raise NotFound(f"node {node_id} does not exist")


def unlink_host(host_id: int) -> None:
    """Forget the host of its nodes (the host is removed; the nodes stay)."""
    Node.update(host=None, modified_at=utcnow()).where(Node.host == host_id).execute()


# --- agents -----------------------------------------------------------------------------------

def attach_registered_host(host: Host) -> int | None:
    """Give a newly registered compute agent its node: the node already named by the host's
    FQDN or short name, or having one of its MACs (unless another live host holds it) — or
    a new node (role Compute, enabled). Returns the node's id; None for a host without the
    compute role. A node that cannot be made (a name or MAC taken) never fails the
    registration: it is logged and skipped."""
    if "compute" not in hosts.host_roles(host):
        return None
    inventory = _inventory(host)
    macs = _agent_macs(inventory)
    try:
        with Node._meta.database.atomic():
            node = _matching_node(host, macs)
            if node is not None:
                hostname = node.hostname or host.fqdn
                Node.update(host=host.id, hostname=hostname, modified_at=utcnow(),
                            xname_key=xname_key(node.xname, hostname)).where(
                    Node.id == node.id).execute()
                return node.id
            arch = inventory.get("architecture")
            node_id = Node.insert(
                hostname=host.fqdn, xname_key=xname_key(None, host.fqdn), role="Compute",
                host=host.id, architecture=arch if arch in ARCHITECTURES else "x86_64").execute()
            taken = {m for (m,) in NodeMac.select(NodeMac.mac).where(NodeMac.mac.in_(macs))
                     .tuples()}
            rows = [{"node": node_id, "mac": m} for m in macs if m not in taken]
            if rows:
                NodeMac.insert_many(rows).execute()
            return node_id
    except peewee.IntegrityError as exc:
        log.warning("registered host %s got no node: %s", host.fqdn, exc)
        return None


def _matching_node(host: Host, macs: list[str]) -> Node | None:
    candidates = [Node.hostname == host.fqdn, Node.hostname == host.nodename]
    if macs:
        candidates.append(Node.id.in_(NodeMac.select(NodeMac.node).where(NodeMac.mac.in_(macs))))
    for where in candidates:
        for node in Node.select().where(where).order_by(Node.id):
            if node.host_id is None or node.host_id == host.id or not live_hosts([node.host_id]):
                return node
    return None


def _inventory(host: Host) -> dict[str, Any]:
    try:
        inventory = json.loads(host.inventory or "{}")
    except ValueError:
        return {}
    return inventory if isinstance(inventory, dict) else {}


def _agent_macs(inventory: dict[str, Any]) -> list[str]:
    macs = []
    for interface in inventory.get("interfaces") or []:
        if not isinstance(interface, dict):
            continue
        try:
            macs.append(normal_mac(interface.get("mac_address")))
        except checks.Invalid:
            continue  # loopback, tunnels: no usable MAC
    return list(dict.fromkeys(macs))[:MAX_MACS]
