"""Agent actions: named handlers with a JSON schema, validated before any work starts.

A capability module declares handlers with ``@action(name, schema=...)``; the decorator only
labels the function, and a ``Registry`` is built from a list of modules. There is no global
registry, so the simulator can run thousands of agents in one process, each with its own set
of actions (e.g. simulated hardware instead of real tools).

Handlers are ``async def handler(args: dict, ctx: ActionContext) -> dict``. They raise
``ActionError`` for an expected failure; the registry turns every outcome (bad JSON, schema
refusal, unknown name, error, unexpected exception) into an ``ActionResult`` and never
raises, except ``CancelledError``, which the caller owns.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import ModuleType
from typing import Any, Protocol

import jsonschema

from protos import agent_pb2

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], "ActionContext"], Awaitable[dict[str, Any]]]


class ActionError(Exception):
    """An expected failure; its message becomes the result's error, without a traceback."""


class Machine(Protocol):
    """What actions may ask of the machine they run on (real, or simulated)."""

    fqdn: str

    def inventory(self) -> dict[str, Any]:
        """The inventory as a dict shaped like the proto ``Inventory`` (may block)."""
        ...

    def has_command(self, name: str) -> bool:
        """Whether ``name`` is an executable on PATH (cheap; may run inline)."""
        ...

    async def kernel_module_state(self, name: str, timeout: float | None) -> str:
        """"loaded", "available" (could be loaded) or "absent"; raises ``TimeoutError``
        when finding out takes longer than ``timeout`` seconds (None: no limit)."""
        ...

    def has_device(self, path: str) -> bool:
        """Whether the device node ``path`` exists (cheap; may run inline)."""
        ...

    def ntp_synchronized(self) -> bool | None:
        """The kernel's view of clock synchronisation; None when it cannot be told."""
        ...

    def now(self) -> float:
        """This machine's clock, in seconds since the epoch."""
        ...


@dataclasses.dataclass(frozen=True)
class ActionContext:
    """Handed to each handler: who it runs for, until when, and where progress goes."""

    action_id: str
    deadline: float | None          # epoch seconds; None = no deadline
    machine: Machine
    progress: Callable[[str], None]

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without one."""
        return None if self.deadline is None else self.deadline - time.time()


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    name: str
    handler: Handler
    validator: jsonschema.protocols.Validator


def action(name: str, schema: dict[str, Any]) -> Callable[[Handler], Handler]:
    """Label ``handler`` as the action ``name``; its arguments must match ``schema``."""
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)

    def label(handler: Handler) -> Handler:
        handler.action_spec = ActionSpec(name, handler, validator_class(schema))  # type: ignore[attr-defined]
        return handler
    return label


def failed(action_id: str, error: str) -> agent_pb2.ActionResult:
    return agent_pb2.ActionResult(action_id=action_id, success=False, error=error)


class Registry:
    """The actions one agent offers, by name."""

    def __init__(self, specs: Iterable[ActionSpec]) -> None:
        self._specs: dict[str, ActionSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"action {spec.name} is declared twice")
            self._specs[spec.name] = spec

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> Registry:
        """Every ``@action`` handler found in ``modules``."""
        return cls(obj.action_spec for module in modules
                   for obj in vars(module).values() if hasattr(obj, "action_spec"))

    def names(self) -> list[str]:
        return sorted(self._specs)

    async def execute(self, request: agent_pb2.ActionRequest, ctx: ActionContext) \
            -> agent_pb2.ActionResult:
        """Validate and run ``request``; every failure comes back as a failed result."""
        spec = self._specs.get(request.name)
        if spec is None:
            return failed(request.action_id, f"unknown action: {request.name!r}")
        args, refusal = _parse_args(request.args_json, spec)
        if refusal:
            return failed(request.action_id, refusal)
        try:
            output = await spec.handler(args, ctx)
        except ActionError as exc:
            return failed(request.action_id, str(exc))
        except Exception as exc:  # a handler bug must not take the agent down
            log.exception("action %s (%s) crashed", request.action_id, request.name)
            return failed(request.action_id, f"internal error: {type(exc).__name__}: {exc}")
        return agent_pb2.ActionResult(action_id=request.action_id, success=True,
                                      result_json=json.dumps(output))


def _parse_args(args_json: str, spec: ActionSpec) -> tuple[dict[str, Any], str | None]:
    """The arguments, or a one-line refusal naming the offending field."""
    try:
        args = json.loads(args_json) if args_json.strip() else {}
    except ValueError as exc:
        return {}, f"invalid arguments for {spec.name}: not JSON ({exc})"
    error = jsonschema.exceptions.best_match(spec.validator.iter_errors(args))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "arguments"
        return {}, f"invalid arguments for {spec.name}: {where}: {_rule(error)}"
    return args, None


_RULES = {
    "type": "must be of type {}", "minimum": "must be at least {}", "maximum": "must be at most {}",
    "exclusiveMinimum": "must be more than {}", "exclusiveMaximum": "must be less than {}",
    "minLength": "must be at least {} characters", "maxLength": "must be at most {} characters",
    "minItems": "must have at least {} items", "maxItems": "must have at most {} items",
    "pattern": "must match {}", "enum": "must be one of {}", "const": "must be {}",
}


def _rule(error: jsonschema.exceptions.ValidationError) -> str:
    """The rule an argument broke, never its value: a refused value may be a password."""
    if error.validator in ("required", "additionalProperties", "dependentRequired"):
        return error.message  # names properties, not values
    template = _RULES.get(str(error.validator))
    if template is None:
        return f"fails the schema's {error.validator} rule"
    return template.format(json.dumps(error.validator_value)[:200])


def default_registry() -> Registry:
    """The actions a real agent offers (imported here: those modules import this one)."""
    from agent.actions import diagnostics, host, power, report
    return Registry.from_modules([diagnostics, host, power, report])
