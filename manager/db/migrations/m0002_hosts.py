"""Server profiles (with the built-in ones), registration tokens, hosts, actions, alerts."""

import peewee

VERSION = 2
NAME = "hosts"

BUILTIN_PROFILES = (
    # name, ui_name, description, managed, worker, default, initial_state, roles
    ("managed_storage_server", "Managed Storage Server",
     "A Lustre server whose targets Shepherd formats, mounts and fails over.",
     True, False, True, "managed", "storage"),
    ("monitored_storage_server", "Monitored Storage Server",
     "A Lustre server Shepherd only watches; it changes nothing there.",
     False, False, False, "monitored", "storage"),
    ("power_controller", "Power Controller",
     "Runs power actions against BMCs and PDUs (IPMI, Redfish, fence agents).",
     True, True, False, "working", "bmc"),
    ("image_builder", "Image Builder",
     "Builds OS images with kiwi-ng and uploads them to the artifact store.",
     True, True, False, "working", "image-builder"),
    ("compute_node", "Compute Node",
     "A compute node booted by boot orchestration; reports what it booted.",
     True, True, False, "working", "compute"),
)


class _Model(peewee.Model):
    class Meta:
        legacy_table_names = False


class ServerProfile(_Model):
    name = peewee.CharField(max_length=64, unique=True)
    ui_name = peewee.CharField(max_length=128)
    ui_description = peewee.TextField(default="")
    managed = peewee.BooleanField(default=False)
    worker = peewee.BooleanField(default=False)
    default = peewee.BooleanField(default=False)
    user_selectable = peewee.BooleanField(default=True)
    initial_state = peewee.CharField(max_length=32)
    ntp = peewee.BooleanField(default=False)
    corosync = peewee.BooleanField(default=False)
    corosync2 = peewee.BooleanField(default=False)
    pacemaker = peewee.BooleanField(default=False)
    roles = peewee.CharField(max_length=255, default="")


class RegistrationToken(_Model):
    secret = peewee.CharField(max_length=64, unique=True)
    expiry = peewee.DateTimeField()
    credits = peewee.IntegerField(default=1)
    cancelled = peewee.BooleanField(default=False)
    profile = peewee.ForeignKeyField(ServerProfile, on_delete="RESTRICT")
    created_at = peewee.DateTimeField()
    created_by = peewee.CharField(max_length=150, default="")


class Host(_Model):
    fqdn = peewee.CharField(max_length=255, index=True)
    nodename = peewee.CharField(max_length=255)
    address = peewee.CharField(max_length=255, default="")
    boot_time = peewee.DateTimeField(null=True)
    server_profile = peewee.ForeignKeyField(ServerProfile, on_delete="RESTRICT")
    state = peewee.CharField(max_length=32, index=True)
    state_modified_at = peewee.DateTimeField()
    install_method = peewee.CharField(max_length=32, default="agent")
    roles = peewee.CharField(max_length=255, default="")
    agent_version = peewee.CharField(max_length=64, default="")
    inventory = peewee.TextField(default="{}")
    cert_serial = peewee.CharField(max_length=64, unique=True, null=True)
    cert_revoked = peewee.BooleanField(default=False)
    registered_at = peewee.DateTimeField()
    last_contact = peewee.DateTimeField(null=True)
    connected = peewee.BooleanField(default=False)
    token = peewee.ForeignKeyField(RegistrationToken, null=True, on_delete="SET NULL")


class Action(_Model):
    id = peewee.CharField(max_length=32, primary_key=True)
    host = peewee.ForeignKeyField(Host, on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    args = peewee.TextField(default="{}")
    state = peewee.CharField(max_length=16, default="queued")
    created_at = peewee.DateTimeField()
    deadline = peewee.DateTimeField(index=True)
    sent_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    result = peewee.TextField(null=True)
    error = peewee.TextField(default="")
    console = peewee.TextField(default="[]")
    caused_by = peewee.CharField(max_length=150, default="")

    class Meta:
        indexes = ((("host", "state"), False),)


class Alert(_Model):
    alert_type = peewee.CharField(max_length=64)
    severity = peewee.CharField(max_length=16)
    message = peewee.TextField()
    alert_item_type = peewee.CharField(max_length=32)
    alert_item_id = peewee.IntegerField(null=True)
    alert_item_str = peewee.CharField(max_length=255, default="")
    begin = peewee.DateTimeField()
    end = peewee.DateTimeField(null=True)
    active = peewee.BooleanField(null=True, default=True)
    dismissed = peewee.BooleanField(default=False)
    variant = peewee.CharField(max_length=255, default="{}")
    lustre_pid = peewee.IntegerField(null=True)
    created_at = peewee.DateTimeField()

    class Meta:
        # active is NULL once an alert ends, so only one active alert per item and type.
        indexes = ((("alert_type", "alert_item_type", "alert_item_id", "active"), True),)


def apply(database: peewee.Database) -> None:
    models = [ServerProfile, RegistrationToken, Host, Action, Alert]
    with database.bind_ctx(models):
        database.create_tables(models)
        # a live host's fqdn is unique; removed hosts keep theirs for the record
        database.execute_sql("CREATE UNIQUE INDEX host_live_fqdn ON host (fqdn) "
                             "WHERE state <> 'removed'")
        ServerProfile.insert_many([
            {"name": n, "ui_name": ui, "ui_description": d, "managed": m, "worker": w,
             "default": df, "initial_state": s, "roles": r}
            for n, ui, d, m, w, df, s, r in BUILTIN_PROFILES]).execute()
