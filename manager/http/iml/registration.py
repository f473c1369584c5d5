"""``/api/registration_token/`` (iml-api.md): tokens that let new servers register.

POST takes ``profile``, ``expiry`` and ``credits``; PATCH only ``cancelled``. Tokens that are
cancelled, expired or spent are no longer listed nor readable (IML's behaviour).
"""

from __future__ import annotations

import datetime
import re
from typing import Any, ClassVar

import peewee

from manager.agents import ssh_install
from manager.db.hosts import RegistrationToken
from manager.domain import hosts
from manager.domain.accounts import Principal
from manager.domain.errors import ValidationError
from manager.domain.permissions import require_administrator
from manager.http.iml.resource import Field, Resource, iso

_PROFILE_URI = re.compile(r"^/api/server_profile/([^/]+)/?\Z")


class RegistrationTokenResource(Resource):
    name = "registration_token"
    model = RegistrationToken
    description = "Server registration tokens: acquire one to add a server by registration."
    fields: ClassVar[dict[str, Field]] = {
        "cancelled": Field("boolean", "Whether this token has been manually cancelled",
                           readonly=False),
        "credits": Field("integer", "How many servers may register with this token (default 1)",
                         readonly=False),
        "expiry": Field("datetime", "When this token expires (default: 60 seconds from now)",
                        readonly=False),
        "id": Field("integer", "Integer record identifier, unique for objects of this type"),
        "profile": Field("related", "Server profile to be used when setting up servers "
                         "using this token", readonly=False, to="server_profile",
                         required=True),
        "register_command": Field("string", "Command line to run on a server to register it "
                                  "using this token"),
        "resource_uri": Field("string", "URL for this object"),
        "secret": Field("string", "The secret servers authenticate with (16 characters "
                        "alphanumeric)"),
    }
    list_methods = ("GET", "POST")
    detail_methods = ("GET", "PATCH")

    def write_responses(self, method: str, on_list: bool) -> dict[int, Any]:
        if method == "PATCH":  # cancelling answers 204: the token is gone from the API
            return {200: "object", 204: None}
        return super().write_responses(method, on_list)

    def __init__(self, public_url: Any, ca_fingerprint: Any, config: Any) -> None:
        self.public_url = public_url
        self.ca_fingerprint = ca_fingerprint
        self.config = config

    def base_query(self, principal: Principal | None) -> peewee.ModelSelect:
        require_administrator(principal, "use registration tokens")
        return hosts.usable_tokens()

    def serialize(self, objects: list[RegistrationToken], principal: Principal | None) -> list[dict]:
        return [self._render(t) for t in objects]

    def _render(self, t: RegistrationToken) -> dict[str, Any]:
        return {
            "cancelled": t.cancelled, "credits": t.credits, "expiry": iso(t.expiry), "id": t.id,
            "profile": f"/api/server_profile/{t.profile.name}/",
            "register_command": self.register_command(t.secret),
            "resource_uri": self.uri(t.id), "secret": t.secret,
        }

    def register_command(self, secret: str) -> str:
        """Install, register, start: one line to paste on the new machine (as root)."""
        cfg = self.config
        return " && ".join(ssh_install.onboarding_steps(
            cfg.agent_install_command, cfg.agent_command, self.public_url(), secret,
            self.ca_fingerprint(), cfg.agent_start_command))

    def create(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        self.check_fields(body, creating=True)
        token = hosts.create_token(principal, _profile_name(body.get("profile")),
                                   _expiry(body.get("expiry")), body.get("credits"))
        return 201, self.detail(principal, str(token.id))

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.check_fields(body)
        others = sorted(set(body) - {"cancelled"})
        if others:
            raise ValidationError({name: "Only 'cancelled' may be changed." for name in others})
        token = self.get_object(principal, obj_id)
        if not isinstance(body.get("cancelled"), bool):
            raise ValidationError({"cancelled": "Must be true or false."})
        if body["cancelled"]:
            hosts.cancel_token(principal, token.id)
            return 204, None
        return 200, self._render(token)


def _profile_name(value: Any) -> Any:
    if isinstance(value, dict):
        value = value.get("name") or value.get("resource_uri")
    if isinstance(value, str) and _PROFILE_URI.match(value):
        return _PROFILE_URI.match(value).group(1)
    return value


def _expiry(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationError({"expiry": "Must be an ISO 8601 date and time."})
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.UTC).replace(tzinfo=None)
    return parsed
