"""``/api/user/`` and ``/api/group/`` as iml-api.md documents them."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, ClassVar

from manager.db.accounts import Group, User, UserGroup
from manager.domain import accounts
from manager.domain.accounts import Principal
from manager.domain.errors import PermissionDenied, ValidationError
from manager.http.iml.resource import Field, Resource

_GROUP_URI = re.compile(r"^/api/group/(\d+)/?\Z")


class GroupResource(Resource):
    name = "group"
    model = Group
    description = ("A user group. Users inherit the permissions of groups of which they are a "
                   "member; the groups are built in, so this resource is read-only.")
    fields: ClassVar[dict[str, Field]] = {
        "id": Field("integer", "Integer record identifier, unique for objects of this type", unique=True),
        "name": Field("string", "Unicode string data. Ex: \"Hello World\"", unique=True),
        "resource_uri": Field("string", "URL for this object"),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {"name": ("exact", "iexact")}
    ordering = ("name",)

    def serialize(self, objects: list[Group], principal: Principal | None) -> list[dict]:
        return [self.render(g.id, g.name) for g in objects]

    @classmethod
    def render(cls, group_id: int, name: str) -> dict:
        return {"id": group_id, "name": name, "resource_uri": cls.uri(group_id)}


class UserResource(Resource):
    name = "user"
    model = User
    description = "A user account"
    fields: ClassVar[dict[str, Field]] = {
        "alert_subscriptions": Field("list", "Alerts this user is sent emails for (May be null)",
                                     nullable=True),
        "email": Field("string", "Unicode string data. Ex: \"Hello World\"", readonly=False, blank=True),
        "first_name": Field("string", "Unicode string data.", readonly=False, blank=True),
        "full_name": Field("string", "Human readable form derived from first_name and last_name"),
        "groups": Field("related", "List of groups that this user is a member of. May only be "
                        "modified by superusers (May be null)", readonly=False, nullable=True,
                        to="group", many=True, full=True),
        "id": Field("integer", "Integer record identifier, unique for objects of this type", unique=True),
        "is_superuser": Field("boolean", "Is the user a superuser"),
        "last_name": Field("string", "Unicode string data.", readonly=False, blank=True),
        "new_password1": Field("string", "Used for modifying password (request must be made by "
                               "the same user or by a superuser)", readonly=False, write_only=True),
        "new_password2": Field("string", "Password confirmation, must match new_password1",
                               readonly=False, write_only=True),
        "password1": Field("string", "Used when creating a user (request must be made by a "
                           "superuser)", readonly=False, write_only=True, required=True),
        "password2": Field("string", "Password confirmation, must match password1",
                           readonly=False, write_only=True, required=True),
        "resource_uri": Field("string", "URL for this object"),
        "username": Field("string", "Required. 30 characters or fewer. Letters, numbers and "
                          "@/./+/-/_ characters", readonly=False, unique=True,
                          required=True),
    }
    ordering = ("username", "email")
    list_methods = ("GET", "POST")
    detail_methods = ("GET", "PUT", "DELETE")

    def serialize(self, objects: list[User], principal: Principal | None) -> list[dict]:
        groups: dict[int, list[dict]] = defaultdict(list)
        if objects:
            links = (UserGroup.select(UserGroup.user, Group.id, Group.name).join(Group)
                     .where(UserGroup.user.in_([u.id for u in objects])).order_by(Group.name)
                     .tuples())
            for user_id, group_id, name in links:
                groups[user_id].append(GroupResource.render(group_id, name))
        return [self._render(u, groups[u.id]) for u in objects]

    def _render(self, user: User, groups: list[dict]) -> dict:
        return {
            "alert_subscriptions": [],
            "email": user.email,
            "first_name": user.first_name,
            "full_name": f"{user.first_name} {user.last_name}".strip(),
            "groups": groups,
            "id": user.id,
            "is_superuser": any(g["name"] == accounts.SUPERUSERS for g in groups),
            "last_name": user.last_name,
            "resource_uri": self.uri(user.id),
            "username": user.username,
        }

    def create(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        if not principal.is_superuser:
            raise PermissionDenied("only superusers may create users")
        self.check_fields(body, creating=True)
        user = accounts.create_user(
            principal, body.get("username"), body.get("password1"), body.get("password2"),
            _text(body, "email"), _text(body, "first_name"), _text(body, "last_name"),
            group_names(body.get("groups") or []))
        return 201, self.detail(principal, str(user.id))

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, dict]:
        self.check_fields(body)
        user = self.get_object(principal, obj_id)
        if "username" in body and body["username"] != user.username:
            raise ValidationError({"username": "The username cannot be changed."})
        changes = {k: body[k] for k in ("email", "first_name", "last_name",
                                        "new_password1", "new_password2") if k in body}
        if body.get("groups") is not None:
            changes["groups"] = group_names(body["groups"])
        accounts.update_user(principal, user.id, changes)
        return 200, self.detail(principal, obj_id)

    def delete(self, principal: Principal, obj_id: str) -> None:
        accounts.delete_user(principal, self.get_object(principal, obj_id).id)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise ValidationError({name: "Must be a string."})
    return value


def group_names(items: Any) -> list[str]:
    """Accept groups as URIs, ``{"id"|"name"|"resource_uri"}`` objects or names."""
    if not isinstance(items, list):
        raise ValidationError({"groups": "Must be a list of groups."})
    names, ids = [], []
    for item in items:
        if isinstance(item, dict):
            item = item.get("resource_uri") or item.get("name") or item.get("id")
        if isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        elif isinstance(item, str) and _GROUP_URI.match(item):
            ids.append(int(_GROUP_URI.match(item).group(1)))
        elif isinstance(item, str):
            names.append(item)
        else:
            raise ValidationError({"groups": f"Not a group: {item!r}"})
    if ids:
        found = dict(Group.select(Group.id, Group.name).where(Group.id.in_(ids)).tuples())
        missing = sorted(set(ids) - set(found))
        if missing:
            raise ValidationError({"groups": f"No such group id: {', '.join(map(str, missing))}"})
        names += [found[i] for i in ids]
    return names
