"""Power control types: the BMC agent's driver for a fence agent, command templates, options.

The built-in types (IPMI, Redfish, APC PDU) are rows the migration seeds. A type names a
Debian fence agent, as in IML; the BMC agent speaks IPMI and Redfish itself (pyghmi, sushy)
and runs any other fence agent as a program. Templates document the fence-agent command line
of each operation, IML-style; the password is never part of one — the BMC agent gives fence
agents their options, the password among them, on stdin.
"""

from __future__ import annotations

import re
import string
from typing import Any

from manager.domain.inventory import checks

BUILTIN_TYPES = ("IPMI", "Redfish", "APC PDU")
DRIVERS = {"fence_ipmilan": "ipmi", "fence_redfish": "redfish"}
AGENT_PATTERN = r"fence_[a-z0-9_]{1,58}"
TEMPLATE_FIELDS = ("monitor_template", "outlet_list_template", "outlet_query_template",
                   "powercycle_template", "poweroff_template", "poweron_template")
PLACEHOLDERS = ("agent", "address", "port", "username", "identifier", "options")

# Options as the BMC agent reads them: "name=value", "name" or "--name[=value]" tokens. Names
# Shepherd sets itself, and those that would run a program or read a secret from elsewhere,
# are refused (the agent refuses them too; refusing here says so when they are entered).
OPTIONS_PATTERN = r"[A-Za-z0-9_=.,:/@+% -]*"
OPTION_TOKEN = re.compile(r"(?:--)?([a-z][a-z0-9_-]*)(?:=(.*))?")
RESERVED_OPTIONS = frozenset({"ip", "ipaddr", "ipport", "port", "username", "login",
                              "password", "passwd", "action", "option", "plug", "port_as_ip"})
REFUSED_OPTION = re.compile(r"path|script|ssh_options|identity_file|command|exec|sudo|passw")


def driver_for(agent: str) -> str:
    """The BMC agent's driver for a type's fence agent: "ipmi", "redfish" or "fence"."""
    return DRIVERS.get(agent, "fence")


def default_templates() -> dict[str, str]:
    """Templates of a new type that gives none: a fence agent with outlets (plugs)."""
    common = "{agent} --ip={address} --ipport={port} --username={username}"
    plug = common + " --plug={identifier} {options}"
    return {"monitor_template": common + " {options} --action=monitor",
            "outlet_list_template": common + " {options} --action=list",
            "outlet_query_template": plug + " --action=status",
            "powercycle_template": plug + " --action=reboot",
            "poweroff_template": plug + " --action=off",
            "poweron_template": plug + " --action=on"}


def display_name(make: str | None, model: str | None, agent: str) -> str:
    """IML's name for a type given none: "make model (agent)"."""
    return f"{make or 'Unknown Make'} {model or 'Unknown Model'} ({agent})"


def check_template(value: Any) -> str | None:
    """A command template: ``{placeholder}`` fields only from ``PLACEHOLDERS``."""
    value = checks.text(1024, null=True)(value)
    if value is None:
        return None
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise checks.Invalid(f"Not a command template: {exc}.") from None
    if any(n in ("password", "passwd") for n in names) or "%(password)" in value:
        raise checks.Invalid("The password is never part of a command line (fence agents "
                             "read it on stdin); remove it from the template.")
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise checks.Invalid(f"Unknown placeholder {{{unknown[0]}}}; templates may use "
                         + " ".join(f"{{{p}}}" for p in PLACEHOLDERS) + ".")
    return value


def check_options(value: Any) -> str | None:
    """Options passed to the driver or fence agent, e.g. ``lanplus=1 privlvl=operator``."""
    value = checks.text(1024, OPTIONS_PATTERN, "letters, digits, spaces and _=.,:/@+%-",
                        null=True)(value)
    for token in (value or "").split():
        match = OPTION_TOKEN.fullmatch(token)
        if match is None:
            raise checks.Invalid(f"Option {token!r} is not of the form name=value.")
        name = match.group(1).replace("-", "_")
        if name in RESERVED_OPTIONS or REFUSED_OPTION.search(name):
            raise checks.Invalid(f"Option {name!r} is not allowed: Shepherd sets it itself, "
                                 "or it names a program or a secret.")
    return value
