"""Accounts: users and their groups, login, bearer tokens and web sessions.

Runs on a database thread (see ``manager.db.executor``). Permissions follow IML: superusers
manage accounts; every user may change their own password and names; only superusers change
groups. A password change, a deletion or a logout revokes credentials at once; the in-process
``revocation_epoch`` lets credential caches notice without a database read.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
import re
import secrets
from collections.abc import Iterable
from typing import Any

from manager.db.accounts import ApiToken, Group, User, UserGroup, WebSession
from manager.db.base import utcnow
from manager.domain import passwords
from manager.domain.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    ValidationError,
)

SUPERUSERS = "superusers"
BUILTIN_GROUPS = (SUPERUSERS, "filesystem_administrators", "filesystem_users")
USERNAME_RE = re.compile(r"^[\w.@+-]{1,30}\Z", re.ASCII)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
MIN_PASSWORD_LENGTH = 8
TOKEN_PREFIX = "shp_"

_epoch = itertools.count(1)
_revocation_epoch = 0


def revocation_epoch() -> int:
    """Changes whenever this process revokes a credential; caches compare it."""
    return _revocation_epoch


def _bump_epoch() -> None:
    global _revocation_epoch
    _revocation_epoch = next(_epoch)


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is making a request, resolved from a token or a session."""

    user_id: int
    username: str
    groups: frozenset[str]
    via: str  # "token" or "session"
    credential_id: int

    @property
    def is_superuser(self) -> bool:
        return SUPERUSERS in self.groups


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def group_names(user_id: int) -> frozenset[str]:
    rows = (Group.select(Group.name).join(UserGroup).where(UserGroup.user == user_id))
    return frozenset(g.name for g in rows)


def get_user(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


# --- creating and changing users -------------------------------------------------------

def create_user(actor: Principal | None, username: str, password1: Any, password2: Any,
                email: str = "", first_name: str = "", last_name: str = "",
                groups: Iterable[str] = ()) -> User:
    """Create an account; ``actor`` None means the local administrator (CLI)."""
    if actor is not None and not actor.is_superuser:
        raise PermissionDenied("only superusers may create users")
    errors = {}
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        errors["username"] = ("Required. 30 characters or fewer. "
                              "Letters, numbers and @/./+/-/_ characters")
    elif User.select().where(User.username == username).exists():
        errors["username"] = "A user with that username already exists."
    errors.update(_password_errors(password1, password2, "password1", "password2"))
    errors.update(_profile_errors(email, first_name, last_name))
    group_rows = _resolve_groups(groups, errors)
    if errors:
        raise ValidationError(errors)
    with User._meta.database.atomic():
        user = User.create(username=username, email=email or "", first_name=first_name or "",
                           last_name=last_name or "", password_hash=passwords.hash_password(password1))
        UserGroup.insert_many([{"user": user.id, "group": g.id} for g in group_rows]).execute()
    return user


def update_user(actor: Principal, user_id: int, changes: dict[str, Any]) -> User:
    """Apply a PUT: names/email, a password change, groups (superusers only)."""
    user = get_user(user_id)
    if actor.user_id != user.id and not actor.is_superuser:
        raise PermissionDenied("you may only change your own account")
    errors = _profile_errors(changes.get("email", user.email), changes.get("first_name", user.first_name),
                             changes.get("last_name", user.last_name))
    new_password = None
    if changes.get("new_password1") is not None or changes.get("new_password2") is not None:
        errors.update(_password_errors(changes.get("new_password1"), changes.get("new_password2"),
                                       "new_password1", "new_password2"))
        new_password = changes.get("new_password1")
    group_rows = None
    if changes.get("groups") is not None:
        group_rows = _resolve_groups(changes["groups"], errors)
        wanted = {g.name for g in group_rows}
        if wanted != set(group_names(user.id)) and not actor.is_superuser:
            raise PermissionDenied("only superusers may change groups")
        if actor.user_id == user.id and SUPERUSERS not in wanted and actor.is_superuser:
            errors["groups"] = "You cannot remove yourself from the superusers group."
    if errors:
        raise ValidationError(errors)
    with User._meta.database.atomic():
        for field in ("email", "first_name", "last_name"):
            if field in changes:
                setattr(user, field, changes[field] or "")
        if new_password is not None:
            user.password_hash = passwords.hash_password(new_password)
            _revoke_all(user.id, keep=actor if actor.user_id == user.id else None)
        user.save()
        if group_rows is not None:
            UserGroup.delete().where(UserGroup.user == user.id).execute()
            UserGroup.insert_many([{"user": user.id, "group": g.id} for g in group_rows]).execute()
            _bump_epoch()
    return user


def set_password(user_id: int, password: str) -> None:
    """Local administrator's password reset (CLI); revokes every credential of the user."""
    errors = _password_errors(password, password, "password", "password")
    if errors:
        raise ValidationError(errors)
    with User._meta.database.atomic():
        User.update(password_hash=passwords.hash_password(password)).where(User.id == user_id).execute()
        _revoke_all(user_id)


def delete_user(actor: Principal, user_id: int) -> None:
    user = get_user(user_id)
    if not actor.is_superuser:
        raise PermissionDenied("only superusers may delete users")
    if actor.user_id == user.id:
        raise ValidationError("You cannot delete your own account.")
    user.delete_instance()
    _bump_epoch()


def _password_errors(p1: Any, p2: Any, name1: str, name2: str) -> dict[str, str]:
    if not isinstance(p1, str) or not p1:
        return {name1: "This field is required."}
    if len(p1) < MIN_PASSWORD_LENGTH:
        return {name1: f"Password must be at least {MIN_PASSWORD_LENGTH} characters."}
    if len(p1) > 1024:
        return {name1: "Password must be at most 1024 characters."}
    if p1 != p2:
        return {name2: "The two password fields didn't match."}
    return {}


def _profile_errors(email: Any, first_name: Any, last_name: Any) -> dict[str, str]:
    errors = {}
    if email and (not isinstance(email, str) or len(email) > 254 or not EMAIL_RE.match(email)):
        errors["email"] = "Enter a valid email address."
    for name, value in (("first_name", first_name), ("last_name", last_name)):
        if value is not None and (not isinstance(value, str) or len(value) > 150):
            errors[name] = "Must be a string of at most 150 characters."
    return errors


def _resolve_groups(names: Iterable[str], errors: dict[str, str]) -> list[Group]:
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        errors["groups"] = "Must be a list of group names or group URIs."
        return []
    found = list(Group.select().where(Group.name.in_(names))) if names else []
    missing = sorted(set(names) - {g.name for g in found})
    if missing:
        errors["groups"] = f"No such group: {', '.join(missing)}"
    return found


# --- login, tokens, sessions -----------------------------------------------------------

def authenticate(username: Any, password: Any) -> User:
    """Check a username and password; the error never says which of the two was wrong."""
    if not isinstance(username, str) or not isinstance(password, str):
        raise AuthenticationFailed("Authentication Failed.")
    if "\x00" in username:  # PostgreSQL refuses NUL in text; no user has one
        passwords.verify_password(password, _DUMMY_HASH)
        raise AuthenticationFailed("Authentication Failed.")
    user = User.get_or_none(User.username == username)
    if user is None:
        passwords.verify_password(password, _DUMMY_HASH)  # same cost as a real check
        raise AuthenticationFailed("Authentication Failed.")
    if not passwords.verify_password(password, user.password_hash) or not user.is_active:
        raise AuthenticationFailed("Authentication Failed.")
    User.update(last_login=utcnow()).where(User.id == user.id).execute()
    return user


_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def issue_token(user: User, ttl_seconds: int, client_address: str = "") -> tuple[str, int]:
    """Create a bearer token; return it (shown once, stored only as a digest) and its lifetime."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.create(user=user.id, token_hash=digest(token), client_address=client_address[:64],
                    expires_at=utcnow() + datetime.timedelta(seconds=ttl_seconds))
    return token, ttl_seconds


def resolve_token(token: str) -> Principal:
    """The principal behind a bearer token; raises AuthenticationFailed saying why not."""
    row = (ApiToken.select(ApiToken, User).join(User)
           .where(ApiToken.token_hash == digest(token)).first())
    if row is None:
        raise AuthenticationFailed("Invalid token. Log in again (shepherd login).")
    if row.revoked_at is not None:
        raise AuthenticationFailed("Token has been revoked. Log in again (shepherd login).")
    if row.expires_at <= utcnow():
        raise AuthenticationFailed("Token has expired. Log in again (shepherd login).")
    if not row.user.is_active:
        raise AuthenticationFailed("Account is disabled.")
    return Principal(row.user.id, row.user.username, group_names(row.user.id), "token", row.id)


def revoke_token(token: str) -> bool:
    count = (ApiToken.update(revoked_at=utcnow())
             .where(ApiToken.token_hash == digest(token), ApiToken.revoked_at.is_null()).execute())
    _bump_epoch()
    return count > 0


def start_session(user: User, csrf_token: str, ttl_seconds: int) -> str:
    key = secrets.token_urlsafe(32)
    WebSession.create(user=user.id, key_hash=digest(key), csrf_token=csrf_token,
                      expires_at=utcnow() + datetime.timedelta(seconds=ttl_seconds))
    return key


def resolve_session(key: str) -> tuple[Principal, str] | None:
    """The principal and CSRF token of a live session, or None (anonymous)."""
    row = (WebSession.select(WebSession, User).join(User)
           .where(WebSession.key_hash == digest(key), WebSession.expires_at > utcnow()).first())
    if row is None or not row.user.is_active:
        return None
    principal = Principal(row.user.id, row.user.username, group_names(row.user.id), "session", row.id)
    return principal, row.csrf_token


def end_session(key: str) -> None:
    WebSession.delete().where(WebSession.key_hash == digest(key)).execute()
    _bump_epoch()


def _revoke_all(user_id: int, keep: Principal | None = None) -> None:
    """Revoke every token and session of a user, except the credential ``keep`` is using."""
    tokens = ApiToken.update(revoked_at=utcnow()).where(ApiToken.user == user_id,
                                                        ApiToken.revoked_at.is_null())
    sessions = WebSession.delete().where(WebSession.user == user_id)
    if keep is not None and keep.via == "token":
        tokens = tokens.where(ApiToken.id != keep.credential_id)
    if keep is not None and keep.via == "session":
        sessions = sessions.where(WebSession.id != keep.credential_id)
    tokens.execute()
    sessions.execute()
    _bump_epoch()


def create_initial_admin() -> str | None:
    """On a database with no users, create superuser ``admin`` and return its new password."""
    if User.select().exists():
        return None
    password = secrets.token_urlsafe(18)
    create_user(None, "admin", password, password, groups=[SUPERUSERS])
    return password
