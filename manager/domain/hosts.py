"""Hosts and how they join: registration tokens, registration, removal.

Registration spends one credit of a token with a single conditional UPDATE, so of two agents
racing for the last credit exactly one wins; the host is created in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import secrets
import string
from collections.abc import Callable
from typing import Any

import peewee

from manager.db.base import utcnow
from manager.db.hosts import Action, Host, RegistrationToken, ServerProfile
from manager.db.unlocked import update_unlocked
from manager.domain import alerts
from manager.domain.accounts import Principal
from manager.domain.errors import Conflict, PermissionDenied, ValidationError
from manager.domain.permissions import require_administrator

SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 16
DEFAULT_TOKEN_LIFETIME = datetime.timedelta(seconds=60)
MAX_CREDITS = 100_000
FQDN_RE = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
ROLE_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")
REMOVED = "removed"
CONTACT_ALERT = "HostContactAlert"


class RegistrationRefused(PermissionDenied):
    """The token cannot be used; the message says why (unknown, expired, cancelled, spent)."""


#: bytes from this value up would favour the first letters of the alphabet: drawn again
_UNBIASED = 256 - 256 % len(SECRET_ALPHABET)


def new_secret() -> str:
    """``SECRET_LENGTH`` characters of ``SECRET_ALPHABET``, uniformly, from one read of the
    system's random source (``secrets.choice`` per character made 16 reads, each a system
    call that hands the interpreter lock away: under load, most of a token POST's time)."""
    chars: list[str] = []
    while len(chars) < SECRET_LENGTH:
        chars += [SECRET_ALPHABET[b % len(SECRET_ALPHABET)]
                  for b in secrets.token_bytes(2 * SECRET_LENGTH) if b < _UNBIASED]
    return "".join(chars[:SECRET_LENGTH])


def profile_roles(profile: ServerProfile) -> list[str]:
    return [r for r in profile.roles.split(",") if r]


def host_roles(host: Host) -> list[str]:
    return [r for r in host.roles.split(",") if r]


def get_profile(name: str) -> ServerProfile:
    profile = ServerProfile.get_or_none(ServerProfile.name == name)
    if profile is None:
        raise ValidationError({"profile": f"No such server profile: {name!r}"})
    return profile


# --- tokens ------------------------------------------------------------------------------

def create_token(principal: Principal, profile_name: Any, expiry: datetime.datetime | None,
                 credits: Any) -> RegistrationToken:
    require_administrator(principal, "create registration tokens")
    if not isinstance(profile_name, str) or not profile_name:
        raise ValidationError({"profile": "This field is required."})
    profile = get_profile(profile_name)
    if credits is None:
        credits = 1
    if isinstance(credits, bool) or not isinstance(credits, int) or not 1 <= credits <= MAX_CREDITS:
        raise ValidationError({"credits": f"Must be an integer from 1 to {MAX_CREDITS}."})
    now = utcnow()
    expiry = expiry or now + DEFAULT_TOKEN_LIFETIME
    if expiry <= now:
        raise ValidationError({"expiry": "Must be in the future."})
    return RegistrationToken.create(secret=new_secret(), expiry=expiry, credits=credits,
                                    profile=profile, created_by=principal.username)


def usable_tokens() -> peewee.ModelSelect:
    """Tokens that can still register a host (IML lists only these)."""
    return (RegistrationToken.select(RegistrationToken, ServerProfile).join(ServerProfile)
            .where(RegistrationToken.cancelled == False,
                   RegistrationToken.credits > 0, RegistrationToken.expiry > utcnow()))


def cancel_token(principal: Principal, token_id: int) -> None:
    require_administrator(principal, "cancel registration tokens")
    RegistrationToken.update(cancelled=True).where(RegistrationToken.id == token_id).execute()


# --- registration ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Registration:
    secret: str
    csr_pem: bytes
    fqdn: str
    nodename: str
    roles: tuple[str, ...]
    version: str
    address: str
    inventory: dict[str, Any]


Signer = Callable[[bytes, str], tuple[bytes, int]]


def register(reg: Registration, sign: Signer, initial_state: str) -> Host:
    """Spend a credit, sign the CSR and create the host in ``initial_state``; all or
    nothing (``host_lifecycle.register`` plans its set-up in the same transaction)."""
    _validate(reg)
    database = Host._meta.database
    try:
        with database.atomic():
            if Host.select().where(Host.fqdn == reg.fqdn, Host.state != REMOVED).exists():
                raise Conflict(f"FQDN in use: {reg.fqdn} is already registered")
            token = _spend_credit(reg.secret)
            try:
                cert_pem, serial = sign(reg.csr_pem, reg.fqdn)
            except ValueError as exc:
                raise ValidationError({"csr": f"Invalid certificate signing request: {exc}"}) from None
            profile = token.profile
            roles = sorted(set(profile_roles(profile)) | set(reg.roles))
            host = Host.create(
                fqdn=reg.fqdn, nodename=reg.nodename, address=reg.address,
                boot_time=boot_time_of(reg.inventory), server_profile=profile,
                state=initial_state, roles="," + ",".join(roles) + ",",
                agent_version=reg.version, inventory=json.dumps(reg.inventory),
                cert_serial=str(serial), install_method="agent", token=token)
    except peewee.IntegrityError:
        raise Conflict(f"FQDN in use: {reg.fqdn} is already registered") from None
    host.certificate_pem = cert_pem
    return host


def _validate(reg: Registration) -> None:
    errors = {}
    if not FQDN_RE.match(reg.fqdn or ""):
        errors["fqdn"] = "Not a valid host name."
    if not reg.nodename or len(reg.nodename) > 255:
        errors["nodename"] = "Required, at most 255 characters."
    bad = [r for r in reg.roles if not ROLE_RE.match(r)]
    if bad:
        errors["roles"] = f"Invalid role names: {', '.join(bad)}"
    if not reg.csr_pem:
        errors["csr"] = "A certificate signing request is required."
    if errors:
        raise ValidationError(errors)


def _spend_credit(secret: str) -> RegistrationToken:
    now = utcnow()
    spent = (RegistrationToken.update(credits=RegistrationToken.credits - 1)
             .where(RegistrationToken.secret == secret, RegistrationToken.credits > 0,
                    RegistrationToken.cancelled == False,
                    RegistrationToken.expiry > now).execute())
    token = (RegistrationToken.select(RegistrationToken, ServerProfile).join(ServerProfile)
             .where(RegistrationToken.secret == secret).first())
    if spent == 1:
        return token
    if token is None:
        raise RegistrationRefused("unknown registration token")
    if token.cancelled:
        raise RegistrationRefused("registration token has been cancelled")
    if token.expiry <= now:
        raise RegistrationRefused("registration token has expired")
    raise RegistrationRefused("registration token has no credits left")


def boot_time_of(inventory: dict[str, Any]) -> datetime.datetime | None:
    value = inventory.get("boot_time")  # protobuf's JSON form carries int64 as a string
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 2**33:
        return None
    return datetime.datetime.fromtimestamp(value, datetime.UTC).replace(tzinfo=None)


# --- agents' lifecycle -------------------------------------------------------------------

def identify(serial: str) -> Host:
    """The live host a client certificate serial belongs to."""
    host = Host.get_or_none(Host.cert_serial == serial)
    if host is None or host.cert_revoked or host.state == REMOVED:
        raise PermissionDenied("certificate unknown or revoked")
    return host


def record_hello(host_id: int, version: str, inventory: dict[str, Any]) -> None:
    changes: dict[str, Any] = {"agent_version": version, "connected": True,
                               "last_contact": utcnow()}
    if inventory:
        changes["inventory"] = json.dumps(inventory)
        changes["boot_time"] = boot_time_of(inventory)
    Host.update(changes).where(Host.id == host_id).execute()
    alerts.end_alert(CONTACT_ALERT, "host", host_id)


def record_disconnected(host_ids: list[int]) -> None:
    if host_ids:
        Host.update(connected=False).where(Host.id.in_(host_ids)).execute()


def record_contact(host_ids: list[int], when: datetime.datetime) -> None:
    """Batched last-contact update; rows the engine holds wait for the next pass."""
    update_unlocked(Host, host_ids, {Host.last_contact: when})


def raise_contact_lost(host_ids: list[int]) -> int:
    raised = 0
    for host in Host.select(Host.id, Host.fqdn).where(Host.id.in_(host_ids), Host.state != REMOVED):
        raised += alerts.raise_alert(CONTACT_ALERT, alerts.WARNING,
                                     f"Lost contact with host {host.fqdn}", "host", host.id,
                                     host.fqdn)
    return raised


def mark_removed(host_id: int) -> None:
    """Mark the host removed and revoke its certificate; its unfinished actions fail (the
    caller closes its stream once this commits). Idempotent."""
    with Host._meta.database.atomic():
        Host.update(state=REMOVED, cert_revoked=True, connected=False,
                    state_modified_at=utcnow()).where(Host.id == host_id, Host.state != REMOVED).execute()
        (Action.update(state="failed", error="host removed", finished_at=utcnow())
         .where(Action.host == host_id, Action.state.in_(("queued", "sent"))).execute())
        alerts.end_alert(CONTACT_ALERT, "host", host_id)
