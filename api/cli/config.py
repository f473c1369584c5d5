"""The contexts file: the managers this user talks to, with a bearer token and a CA for each.

It lives at ``$XDG_CONFIG_HOME/shepherd/config.toml`` (``~/.config/shepherd`` by default)
and holds bearer tokens, so it is written with mode 0600 in a 0700 directory, atomically
(a new file renamed over the old one), and never printed. The format is a handful of string
and boolean keys, written here by hand with TOML's escaping and read back with ``tomllib``::

    current_context = "default"

    [contexts.default]
    url = "https://mgr.example.com:8443"
    username = "admin"
    token = "shp_…"
    ca_file = "/root/.config/shepherd/ca-0f3c5e1a9b2d4c6e.pem"
    insecure = false
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

CONTEXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}\Z")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


class ConfigError(Exception):
    """The contexts file cannot be read or written; the message says which and why."""


@dataclasses.dataclass
class Context:
    url: str
    username: str = ""
    token: str = ""
    ca_file: str = ""
    insecure: bool = False


@dataclasses.dataclass
class Config:
    current: str = ""
    contexts: dict[str, Context] = dataclasses.field(default_factory=dict)


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CONFIG_HOME/shepherd``, or ``~/.config/shepherd`` when that is unset or relative."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "shepherd"


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    return config_dir(environ) / "config.toml"


def load(path: Path) -> Config:
    """The contexts in ``path``; an empty Config when the file does not exist yet."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    tables = doc.get("contexts", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'contexts' must be a table")
    contexts = {name: _context(path, name, table) for name, table in tables.items()}
    return Config(str(doc.get("current_context", "")), contexts)


def _context(path: Path, name: str, table: object) -> Context:
    if not isinstance(table, dict) or not isinstance(table.get("url"), str):
        raise ConfigError(f"{path}: context {name!r} has no url")
    fields = {}
    for field in dataclasses.fields(Context):
        if field.name in table:
            kind = bool if field.name == "insecure" else str
            if not isinstance(table[field.name], kind):
                raise ConfigError(f"{path}: {field.name} of context {name!r} must be a {kind.__name__}")
            fields[field.name] = table[field.name]
    return Context(**fields)


def save(config: Config, path: Path) -> None:
    """Write ``config`` to ``path`` (mode 0600), replacing the old file in one rename."""
    try:
        write_private(path, dumps(config).encode())
    except (OSError, UnicodeEncodeError) as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from None


def dumps(config: Config) -> str:
    lines = [f"current_context = {_string(config.current)}"]
    for name, context in config.contexts.items():
        key = name if _BARE_KEY.fullmatch(name) else _string(name)
        lines += ["", f"[contexts.{key}]"]
        for field in dataclasses.fields(Context):
            value = getattr(context, field.name)
            rendered = ("true" if value else "false") if isinstance(value, bool) else _string(value)
            lines.append(f"{field.name} = {rendered}")
    return "\n".join(lines) + "\n"


def write_private(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600, its directory made 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is ignored for a file left over from a crash
        f.write(data)
        f.flush()
        os.fsync(fd)
    os.replace(temp, path)


def _string(value: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
