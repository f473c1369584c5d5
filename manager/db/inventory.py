"""Inventory and power control: nodes with their groups and MACs, power control types,
devices (BMCs, PDUs) and their outlets.

Groups and MAC addresses are rows of their own, so "nodes in group G" and "the node with MAC
M" are index lookups however many nodes there are. A node reaches its power outlet through
``Node.outlet`` (at most one node per outlet); an outlet's ``host`` is IML's own link.
"""

from __future__ import annotations

import peewee

from manager.db.base import BaseModel, utcnow
from manager.db.hosts import Host


class PowerControlType(BaseModel):
    name = peewee.CharField(max_length=128, unique=True)
    agent = peewee.CharField(max_length=64)
    make = peewee.CharField(max_length=64, null=True)
    model = peewee.CharField(max_length=64, null=True)
    max_outlets = peewee.IntegerField(default=0)  # 0: unlimited
    default_port = peewee.IntegerField(default=23)
    default_options = peewee.CharField(max_length=1024, null=True)
    monitor_template = peewee.CharField(max_length=1024, default="")
    outlet_list_template = peewee.CharField(max_length=1024, null=True)
    outlet_query_template = peewee.CharField(max_length=1024, default="")
    powercycle_template = peewee.CharField(max_length=1024, default="")
    poweroff_template = peewee.CharField(max_length=1024, default="")
    poweron_template = peewee.CharField(max_length=1024, default="")


class PowerControlDevice(BaseModel):
    device_type = peewee.ForeignKeyField(PowerControlType, on_delete="RESTRICT", index=True)
    name = peewee.CharField(max_length=255, index=True)
    address = peewee.CharField(max_length=255)
    port = peewee.IntegerField()
    username = peewee.CharField(max_length=64, default="")
    password = peewee.TextField(default="")  # a Fernet token (manager.secrets), never plaintext
    options = peewee.CharField(max_length=1024, null=True)  # NULL: the type's default_options

    class Meta:
        indexes = ((("address", "port"), True),)


class PowerControlDeviceOutlet(BaseModel):
    device = peewee.ForeignKeyField(PowerControlDevice, on_delete="CASCADE", backref="outlets")
    identifier = peewee.CharField(max_length=255, default="")
    host = peewee.ForeignKeyField(Host, null=True, on_delete="SET NULL", index=True)
    has_power = peewee.CharField(max_length=8, default="Unknown")  # On, Off, Unknown
    power_checked_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("device", "identifier"), True),)


class Node(BaseModel):
    xname = peewee.CharField(max_length=64, null=True, unique=True)
    # the xname with zero-padded numbers, so that x3000c0s2b0n0 sorts before x3000c0s10b0n0
    xname_key = peewee.CharField(max_length=80, index=True)
    hostname = peewee.CharField(max_length=255, null=True, unique=True)
    role = peewee.CharField(max_length=32, index=True)
    sub_role = peewee.CharField(max_length=32, default="", index=True)
    enabled = peewee.BooleanField(default=True)
    architecture = peewee.CharField(max_length=16, default="x86_64", index=True)
    outlet = peewee.ForeignKeyField(PowerControlDeviceOutlet, null=True, unique=True,
                                    on_delete="SET NULL")
    host = peewee.ForeignKeyField(Host, null=True, on_delete="SET NULL", index=True)
    created_at = peewee.DateTimeField(default=utcnow)
    modified_at = peewee.DateTimeField(default=utcnow)


class NodeGroup(BaseModel):
    """Membership of a node in a named group (BOS node groups, limits)."""

    node = peewee.ForeignKeyField(Node, on_delete="CASCADE", index=True)
    name = peewee.CharField(max_length=64)

    class Meta:
        indexes = ((("name", "node"), True),)


class NodeMac(BaseModel):
    node = peewee.ForeignKeyField(Node, on_delete="CASCADE", index=True)
    mac = peewee.CharField(max_length=17, unique=True)  # aa:bb:cc:dd:ee:ff
