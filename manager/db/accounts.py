"""Users, groups, bearer tokens and web sessions — shared by every API family."""

from __future__ import annotations

import peewee

from manager.db.base import BaseModel, utcnow


class Group(BaseModel):
    name = peewee.CharField(max_length=80, unique=True)


class User(BaseModel):
    username = peewee.CharField(max_length=150, unique=True)
    email = peewee.CharField(max_length=254, default="")
    first_name = peewee.CharField(max_length=150, default="")
    last_name = peewee.CharField(max_length=150, default="")
    password_hash = peewee.CharField(max_length=255)
    is_active = peewee.BooleanField(default=True)
    date_joined = peewee.DateTimeField(default=utcnow)
    last_login = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("email",), False),)


class UserGroup(BaseModel):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="group_links")
    group = peewee.ForeignKeyField(Group, on_delete="CASCADE", backref="user_links")

    class Meta:
        indexes = ((("user", "group"), True),)


class ApiToken(BaseModel):
    """A bearer token; only its SHA-256 is stored, so a database dump reveals no token."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="tokens")
    token_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    client_address = peewee.CharField(max_length=64, default="")


class WebSession(BaseModel):
    """An authenticated cookie session; anonymous sessions are never stored."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="sessions")
    key_hash = peewee.CharField(max_length=64, unique=True)
    csrf_token = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)


MODELS = (Group, User, UserGroup, ApiToken, WebSession)
