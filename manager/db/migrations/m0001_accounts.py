"""Users, groups (with IML's three built-in groups), bearer tokens and web sessions."""

import peewee

VERSION = 1
NAME = "accounts"

BUILTIN_GROUPS = ("superusers", "filesystem_administrators", "filesystem_users")


class _Model(peewee.Model):
    class Meta:
        legacy_table_names = False


class Group(_Model):
    name = peewee.CharField(max_length=80, unique=True)


class User(_Model):
    username = peewee.CharField(max_length=150, unique=True)
    email = peewee.CharField(max_length=254, default="", index=True)
    first_name = peewee.CharField(max_length=150, default="")
    last_name = peewee.CharField(max_length=150, default="")
    password_hash = peewee.CharField(max_length=255)
    is_active = peewee.BooleanField(default=True)
    date_joined = peewee.DateTimeField()
    last_login = peewee.DateTimeField(null=True)


class UserGroup(_Model):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    group = peewee.ForeignKeyField(Group, on_delete="CASCADE")

    class Meta:
        indexes = ((("user", "group"), True),)


class ApiToken(_Model):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    token_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField(index=True)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    client_address = peewee.CharField(max_length=64, default="")


class WebSession(_Model):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    key_hash = peewee.CharField(max_length=64, unique=True)
    csrf_token = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField(index=True)


def apply(database: peewee.Database) -> None:
    models = [Group, User, UserGroup, ApiToken, WebSession]
    with database.bind_ctx(models):
        database.create_tables(models)
        Group.insert_many([{"name": n} for n in BUILTIN_GROUPS]).execute()
