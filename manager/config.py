"""The manager's settings, declared once: type, default, help, environment variable.

Precedence, lowest first: built-in default, environment (``SHEPHERD_*``), the config file
(TOML, ``--config`` or ``SHEPHERD_CONFIG``), command-line flags. The README's table is
checked against this declaration by the tests.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

DEFAULT_STATE_DIR = "/var/lib/shepherd"


class ConfigError(ValueError):
    """A setting has a value it cannot take; the message names the setting."""


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return text
    parse.__name__ = "str"
    return parse


def _strict(kind: Callable[[Any], Any], value: Any) -> Any:
    """Refuse what int()/float() would silently bend: booleans, fractions, NaN, 1_000."""
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError(f"expected a number, not {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected an integer, not {value!r}")
    if kind is int and isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
        raise ValueError(f"expected an integer, not {value!r}")
    if kind is float and not math.isfinite(float(value)):
        raise ValueError(f"expected a finite number, not {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    type: Callable[[Any], Any]
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None

    @property
    def env(self) -> str:
        return "SHEPHERD_" + self.name.upper()

    def parse(self, value: Any, source: str) -> Any:
        try:
            parsed = self.type(_strict(self.type, value))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.name} (from {source}): {exc}") from None
        if self.minimum is not None and parsed < self.minimum:
            raise ConfigError(f"{self.name} (from {source}): must be >= {self.minimum}")
        if self.maximum is not None and parsed > self.maximum:
            raise ConfigError(f"{self.name} (from {source}): must be <= {self.maximum}")
        return parsed


SETTINGS: tuple[Setting, ...] = (
    Setting("state_dir", str, DEFAULT_STATE_DIR,
            "Directory for the CA, certificates and the embedded SQLite database."),
    Setting("database_url", str, "",
            "sqlite:///PATH or postgresql://USER[:PASS]@HOST[:PORT]/DB; "
            "empty means sqlite:///STATE_DIR/shepherd.db."),
    Setting("port", int, 8443, "REST API port (HTTPS unless http is set).", 0, 65535),
    Setting("agent_port", int, 8444, "gRPC port agents hold their stream on (mutual TLS).", 0, 65535),
    Setting("registration_port", int, 8445,
            "gRPC port agents register on (TLS without a client certificate).", 0, 65535),
    Setting("public_host", str, "",
            "Host name agents and clients use to reach this manager (default: its FQDN)."),
    Setting("address", str, "0.0.0.0", "Address the REST and agent servers bind to."),
    Setting("http", _bool, False, "Serve plain HTTP (behind a TLS-terminating proxy)."),
    Setting("server_names", str, "",
            "Extra comma-separated DNS names/IPs for the server certificate."),
    Setting("heartbeat_interval", int, 10, "Seconds between agent heartbeats.", 1, 3600),
    Setting("contact_timeout", int, 30,
            "Seconds without a word from an agent before its host gets a contact alert.", 3),
    Setting("agent_install_command", str, "dnf -y install shepherd-agent",
            "Installs the agent on a new machine: the start of every register_command and "
            "the first step of adding a host over SSH (empty: the agent is preinstalled)."),
    Setting("agent_command", str, "shepherd-agent", "The agent's command on managed machines."),
    Setting("agent_start_command", str, "systemctl enable --now shepherd-agent",
            "Starts the agent after it registered (register_command and SSH; empty: none)."),
    Setting("power_poll_interval", int, 60,
            "Seconds between sweeps of every outlet's power state through the BMC agents "
            "(0 = no sweeps).", 0, 86400),
    Setting("ssh_timeout", int, 600, "Seconds an SSH install may take.", 5),
    Setting("db_threads", int, 4, "Threads (each with its connection) for PostgreSQL work; "
            "SQLite always uses one.", 1, 256),
    Setting("token_ttl", int, 12 * 3600, "Lifetime of a bearer token, seconds.", 60),
    Setting("session_ttl", int, 14 * 86400, "Lifetime of a web session, seconds.", 60),
    Setting("login_failures_per_user", int, 5,
            "Failed logins of one user name (15 min) before it is locked out for a while.", 1),
    Setting("login_failures_per_address", int, 50,
            "Failed logins from one address (15 min) before it is locked out for a while.", 1),
    Setting("login_lockout_seconds", int, 30,
            "First lockout after too many failed logins; doubles with each further one.", 1),
    Setting("auth_cache_ttl", float, 2.0,
            "Seconds a validated token is trusted without a database read (0 = never).", 0),
    Setting("max_body_bytes", int, 8 * 1024 * 1024, "Largest accepted request body.", 1024),
    Setting("simulated_agents", int, 0,
            "Start this many simulated agents beside the manager (a first look; 0 = none).",
            0, 10_000),
    Setting("dev", _bool, False, "Development mode: 500 responses include the traceback."),
    Setting("log_level", _one_of("debug", "info", "warning", "error"), "info",
            "debug, info, warning or error."),
    Setting("log_format", _one_of("text", "json"), "text",
            "text (one line per event) or json (for journald/ELK)."),
    Setting("audit", _bool, True, "Keep the audit log of changes, logins and actions."),
    Setting("audit_retention_days", int, 180, "Days audit records are kept.", 1),
    Setting("metrics", _bool, True, "Serve Prometheus metrics at /metrics (authenticated)."),
    Setting("metrics_port", int, 0,
            "Also serve /metrics anonymously over plain HTTP on this port (0 = no).", 0, 65535),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclasses.dataclass
class Config:
    """Resolved settings; attribute names are the setting names."""

    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def resolved_database_url(self) -> str:
        if self.values["database_url"]:
            return self.values["database_url"]
        return "sqlite:///" + os.path.join(self.values["state_dir"], "shepherd.db")

    def server_name_list(self) -> list[str]:
        return [n.strip() for n in self.values["server_names"].split(",") if n.strip()]


def load(flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None,
         config_file: str | None = None) -> Config:
    """Resolve every setting from defaults, environment, config file and flags (in that order)."""
    environ = os.environ if environ is None else environ
    values = {s.name: s.default for s in SETTINGS}
    for s in SETTINGS:
        if s.env in environ:
            values[s.name] = s.parse(environ[s.env], s.env)
    path = config_file or environ.get("SHEPHERD_CONFIG")
    if path:
        for key, raw in _read_file(path).items():
            if key not in _BY_NAME:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[key] = _BY_NAME[key].parse(raw, path)
    for key, raw in (flags or {}).items():
        if key not in _BY_NAME:
            raise ConfigError(f"unknown setting {key!r}")
        if raw is not None:
            values[key] = _BY_NAME[key].parse(raw, f"--{key.replace('_', '-')}")
    _check_together(values)
    return Config(values)


def _check_together(values: dict[str, Any]) -> None:
    """Settings that constrain each other."""
    if values["contact_timeout"] <= values["heartbeat_interval"]:
        raise ConfigError(f"contact_timeout ({values['contact_timeout']} s) must exceed "
                          f"heartbeat_interval ({values['heartbeat_interval']} s), or healthy "
                          "agents would be cut off between heartbeats")


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if "manager" not in data:
        return data
    if not isinstance(data["manager"], dict):
        raise ConfigError(f"config file {path}: 'manager' must be a table")
    others = sorted(k for k in data if k != "manager")
    if others:
        raise ConfigError(f"config file {path}: keys outside [manager]: {', '.join(others)}")
    return data["manager"]


def markdown_table() -> str:
    """The README's configuration table, generated from ``SETTINGS`` (a test keeps them equal)."""
    rows = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = "(empty)" if s.default == "" else str(s.default).lower() if isinstance(
            s.default, bool) else str(s.default)
        flag = "--" + s.name.replace("_", "-")
        if isinstance(s.default, bool):
            flag = f"{flag}, --no-{flag[2:]}"
        rows.append(f"| `{s.env}` | `{flag}` | `{default}` | {s.help} |")
    return "\n".join(rows)
