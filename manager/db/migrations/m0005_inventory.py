"""Nodes (with groups and MACs), power control types, devices and outlets; the built-in
types for IPMI BMCs, Redfish BMCs and APC PDUs."""

import datetime

import peewee

VERSION = 5
NAME = "inventory"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _templates(plug: str, list_outlets: bool) -> dict:
    """Fence-agent command lines; the password is never in them (the BMC agent hands the
    fence agent its options, the password among them, on stdin)."""
    base = "{agent} --ip={address} --ipport={port} --username={username}" + plug + " {options}"
    return {
        "monitor_template": "{agent} --ip={address} --ipport={port} --username={username} "
                            "{options} --action=monitor",
        "outlet_list_template": ("{agent} --ip={address} --ipport={port} --username={username} "
                                 "{options} --action=list") if list_outlets else None,
        "outlet_query_template": base + " --action=status",
        "powercycle_template": base + " --action=reboot",
        "poweroff_template": base + " --action=off",
        "poweron_template": base + " --action=on",
    }


BUILTIN_TYPES = (
    {"name": "IPMI", "agent": "fence_ipmilan", "make": "IPMI", "model": "2.0",
     "max_outlets": 1, "default_port": 623, "default_options": "lanplus=1",
     **_templates("", False)},
    {"name": "Redfish", "agent": "fence_redfish", "make": "DMTF", "model": "Redfish",
     "max_outlets": 1, "default_port": 443, "default_options": "ssl_insecure=1",
     **_templates(" --systems-uri={identifier}", False)},
    {"name": "APC PDU", "agent": "fence_apc_snmp", "make": "APC", "model": "Switched Rack PDU",
     "max_outlets": 0, "default_port": 161, "default_options": None,
     **_templates(" --plug={identifier}", True)},
)


class _Model(peewee.Model):
    class Meta:
        legacy_table_names = False


class Host(_Model):
    """Only what the foreign keys need of the hosts table (migration 2)."""

    class Meta:
        table_name = "host"


class PowerControlType(_Model):
    name = peewee.CharField(max_length=128, unique=True)
    agent = peewee.CharField(max_length=64)
    make = peewee.CharField(max_length=64, null=True)
    model = peewee.CharField(max_length=64, null=True)
    max_outlets = peewee.IntegerField(default=0)
    default_port = peewee.IntegerField(default=23)
    default_options = peewee.CharField(max_length=1024, null=True)
    monitor_template = peewee.CharField(max_length=1024, default="")
    outlet_list_template = peewee.CharField(max_length=1024, null=True)
    outlet_query_template = peewee.CharField(max_length=1024, default="")
    powercycle_template = peewee.CharField(max_length=1024, default="")
    poweroff_template = peewee.CharField(max_length=1024, default="")
    poweron_template = peewee.CharField(max_length=1024, default="")


class PowerControlDevice(_Model):
    device_type = peewee.ForeignKeyField(PowerControlType, on_delete="RESTRICT", index=True)
    name = peewee.CharField(max_length=255, index=True)
    address = peewee.CharField(max_length=255)
    port = peewee.IntegerField()
    username = peewee.CharField(max_length=64, default="")
    password = peewee.TextField(default="")
    options = peewee.CharField(max_length=1024, null=True)

    class Meta:
        indexes = ((("address", "port"), True),)


class PowerControlDeviceOutlet(_Model):
    device = peewee.ForeignKeyField(PowerControlDevice, on_delete="CASCADE")
    identifier = peewee.CharField(max_length=255, default="")
    host = peewee.ForeignKeyField(Host, null=True, on_delete="SET NULL", index=True)
    has_power = peewee.CharField(max_length=8, default="Unknown")
    power_checked_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("device", "identifier"), True),)


class Node(_Model):
    xname = peewee.CharField(max_length=64, null=True, unique=True)
    xname_key = peewee.CharField(max_length=80, index=True)
    hostname = peewee.CharField(max_length=255, null=True, unique=True)
    role = peewee.CharField(max_length=32, index=True)
    sub_role = peewee.CharField(max_length=32, default="", index=True)
    enabled = peewee.BooleanField(default=True)
    architecture = peewee.CharField(max_length=16, default="x86_64", index=True)
    outlet = peewee.ForeignKeyField(PowerControlDeviceOutlet, null=True, unique=True,
                                    on_delete="SET NULL")
    host = peewee.ForeignKeyField(Host, null=True, on_delete="SET NULL", index=True)
    created_at = peewee.DateTimeField(default=_now)
    modified_at = peewee.DateTimeField(default=_now)


class NodeGroup(_Model):
    node = peewee.ForeignKeyField(Node, on_delete="CASCADE", index=True)
    name = peewee.CharField(max_length=64)

    class Meta:
        indexes = ((("name", "node"), True),)


class NodeMac(_Model):
    node = peewee.ForeignKeyField(Node, on_delete="CASCADE", index=True)
    mac = peewee.CharField(max_length=17, unique=True)


def apply(database: peewee.Database) -> None:
    models = [PowerControlType, PowerControlDevice, PowerControlDeviceOutlet, Node, NodeGroup,
              NodeMac]
    with database.bind_ctx([Host, *models]):
        database.create_tables(models)
        PowerControlType.insert_many(list(BUILTIN_TYPES)).execute()
