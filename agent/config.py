"""The agent's settings, declared once: type, default, bounds and help for each.

The command line builds an ``AgentConfig`` from its flags; the simulator builds one per
simulated agent. Nothing here is read from global state, so many agents with different
settings can share one process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEFAULT_STATE_DIR = "/var/lib/shepherd-agent"

# What a machine can be registered as; the manager routes actions to agents by role.
ROLES = ("compute", "storage", "bmc", "image-builder")


class ConfigError(ValueError):
    """A setting has a value it cannot take; the message names the setting."""


def _setting(default: Any, help_text: str, minimum: float | None = None,
             maximum: float | None = None) -> Any:
    metadata = {"help": help_text, "minimum": minimum, "maximum": maximum}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Everything an agent process may tune; ``AgentConfig()`` is the production default."""

    state_dir: str = _setting(
        DEFAULT_STATE_DIR, "Directory for the identity (key, certificate, CA), agent.json, "
        "status.json and the outbox of unacknowledged results.")
    max_actions: int = _setting(
        8, "Actions run at once; further requests wait for a free slot.", 1, 1024)
    heartbeat_jitter: float = _setting(
        0.2, "Each heartbeat interval is the manager's interval times 1 ± this fraction.", 0, 0.5)
    default_heartbeat_s: float = _setting(
        30.0, "Heartbeat interval used when the manager's Welcome does not give one.", 1, 3600)
    backoff_min_s: float = _setting(
        1.0, "First reconnect delay cap; it doubles after each failed attempt.", 0.01, 3600)
    backoff_max_s: float = _setting(
        60.0, "Largest reconnect delay cap (also the delay after a refused certificate).",
        0.01, 3600)
    backoff_reset_s: float = _setting(
        30.0, "A connection that stayed up this long resets the reconnect delay.", 0, 3600)
    connect_timeout_s: float = _setting(
        10.0, "Time allowed to open the channel and receive Welcome, and for registration "
        "requests.", 0.1, 600)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_bounds(field, getattr(self, field.name))
        if self.backoff_min_s > self.backoff_max_s:
            raise ConfigError("backoff_min_s must not exceed backoff_max_s")


def _check_bounds(field: dataclasses.Field, value: Any) -> None:
    minimum, maximum = field.metadata["minimum"], field.metadata["maximum"]
    if minimum is not None and value < minimum:
        raise ConfigError(f"{field.name} must be >= {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{field.name} must be <= {maximum}, not {value}")


def describe() -> list[tuple[str, Any, str]]:
    """``(name, default, help)`` for every setting, for documentation tables."""
    return [(f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(AgentConfig)]
