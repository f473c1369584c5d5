"""Adding hosts over SSH: ``/api/test_host/`` and ``POST /api/host/`` (iml-api.md).

Both take ``address`` (``[user@]host[:port]``) and ``root_pw`` or ``private_key`` (with
``private_key_passphrase``). Adding installs the agent, registers it with a one-time token
of the chosen ``server_profile`` and starts it; the answer is the registered host.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from manager.agents import ssh_install
from manager.db.base import utcnow
from manager.db.hosts import Host, RegistrationToken
from manager.domain import hosts
from manager.domain.accounts import Principal
from manager.domain.errors import ValidationError
from manager.domain.permissions import require_administrator
from manager.http.errors import ApiError
from manager.http.iml.resource import Field, Resource

SSH_FIELDS: dict[str, Field] = {
    "address": Field("string", "A URI like user@myhost.net:22", readonly=False,
                     required=True),
    "auth_type": Field("string", "root_password_choice, private_key_choice or "
                       "existing_keys_choice (validation only)", readonly=False),
    "private_key": Field("string", "SSH private key matching a public key on the new server",
                         readonly=False, write_only=True),
    "private_key_passphrase": Field("string", "Passphrase to decrypt private key",
                                    readonly=False, write_only=True),
    "resource_uri": Field("string", "URL for this object"),
    "root_pw": Field("string", "SSH root password to new server", readonly=False, write_only=True),
    "server_profile": Field("related", "Server profile chosen", readonly=False,
                            to="server_profile"),
}


def ssh_target(body: dict[str, Any]) -> ssh_install.Target:
    """Validate the SSH fields of a request (IML's auth_type rules included)."""
    for name in ("address", "root_pw", "private_key", "private_key_passphrase", "auth_type"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ValidationError({name: "Must be a string."})
    if not body.get("address"):
        raise ValidationError({"address": "This field is required."})
    auth_type = body.get("auth_type")
    if auth_type == "root_password_choice" and not body.get("root_pw"):
        raise ValidationError({"root_pw": "Required for root_password_choice."})
    if auth_type == "private_key_choice" and not body.get("private_key"):
        raise ValidationError({"private_key": "Required for private_key_choice."})
    if not body.get("root_pw") and not body.get("private_key"):
        raise ValidationError({"root_pw": "Give root_pw or private_key."})
    try:
        return ssh_install.parse_target(body["address"], body.get("root_pw"),
                                        body.get("private_key"), body.get("private_key_passphrase"))
    except ValueError as exc:
        raise ValidationError({"address": str(exc)}) from None


def profile_name(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("name") or value.get("resource_uri")
    if not isinstance(value, str) or not value:
        raise ValidationError({"server_profile": "This field is required."})
    return value.rstrip("/").rsplit("/", 1)[-1]


class TestHostResource(Resource):
    name = "test_host"
    model = Host
    description = "Test a potential host address for SSH access before adding it."
    fields: ClassVar[dict[str, Field]] = SSH_FIELDS
    list_methods = ("POST",)
    detail_methods = ()

    def write_responses(self, method: str, on_list: bool) -> dict[int, Any]:
        return {200: {"type": "object", "required": ["address", "status", "valid"],
                      "additionalProperties": False,
                      "properties": {"address": {"type": "string"},
                                     "status": {"type": "array", "items": {"type": "object"}},
                                     "valid": {"type": "boolean"}}}}

    async def acreate(self, ctx: Any, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        require_administrator(principal, "test hosts")
        self.check_fields(body, creating=True)
        target = ssh_target(body)
        checks = await ssh_install.check_access(target)
        return 200, {"address": body["address"], "status": checks,
                     "valid": all(c["value"] for c in checks)}


async def add_over_ssh(ctx: Any, principal: Principal, body: dict[str, Any]) -> int:
    """Install, register and start the agent on the host; return the new host's id."""
    require_administrator(principal, "add hosts")
    target = ssh_target(body)
    cfg = ctx.config
    expiry = utcnow() + datetime.timedelta(seconds=cfg.ssh_timeout)
    token = await ctx.db.run(hosts.create_token, principal, profile_name(body.get("server_profile")),
                             expiry, 1)
    commands = ssh_install.onboarding_steps(cfg.agent_install_command, cfg.agent_command,
                                            ctx.public_url(), token.secret, ctx.ca.fingerprint,
                                            cfg.agent_start_command)
    try:
        await ssh_install.install(target, commands, [token.secret, target.root_pw or ""],
                                  cfg.ssh_timeout)
    except ssh_install.SshError as exc:
        raise ApiError(400, {"address": str(exc)}) from None
    finally:
        await ctx.db.run(lambda: RegistrationToken.update(cancelled=True)
                         .where(RegistrationToken.id == token.id).execute())
    host_id = await ctx.db.run(_host_of_token, token.id)
    if host_id is None:
        raise ApiError(400, {"address": "The agent was installed but did not register."})
    return host_id


def _host_of_token(token_id: int) -> int | None:
    host = Host.get_or_none(Host.token == token_id)
    if host is None:
        return None
    Host.update(install_method="ssh").where(Host.id == host.id).execute()
    return host.id
