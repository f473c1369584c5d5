"""State machines declared once, as tables of ``(from_state, job, to_state, verb)``.

From the table the engine derives, without any imperative chain: the route of jobs from one
state to another (the shortest chain, as IML plans it), and ``available_transitions`` — every
state reachable from the current one, offered with the verb of the chain's last job (a job
without a verb is never offered), and nothing while a job holds a write lock on the object.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Transition:
    from_states: tuple[str, ...]
    job: str
    to_state: str
    verb: str | None = None


class InvalidTransition(ValueError):
    """No chain of jobs leads from the current state to the requested one."""

    def __init__(self, current: str, target: str, allowed: list[str],
                 queued_to: str | None = None) -> None:
        offered = ", ".join(allowed) or "none"
        where = f"'{current}'"
        if queued_to is not None and queued_to != current:
            where += f" (its queued jobs take it to '{queued_to}', where a new plan starts)"
        super().__init__(f"Cannot go from {where} to '{target}'; available: {offered}")
        self.current, self.target, self.allowed = current, target, allowed


@dataclasses.dataclass(frozen=True)
class StateMachine:
    name: str
    initial: str
    transitions: tuple[Transition, ...]
    immutable_states: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        targets = {t.to_state for t in self.transitions}
        if self.transitions and \
                self.initial not in targets | {s for t in self.transitions for s in t.from_states}:
            raise ValueError(f"{self.name}: initial state {self.initial!r} is in no transition")
        object.__setattr__(self, "_chains", {})  # per state: the table never changes

    def transition_for(self, job: str) -> Transition | None:
        return next((t for t in self.transitions if t.job == job), None)

    def states(self) -> set[str]:
        return ({self.initial} | {t.to_state for t in self.transitions}
                | {s for t in self.transitions for s in t.from_states})

    def route(self, current: str, target: str) -> list[Transition]:
        """The shortest chain of jobs from ``current`` to ``target`` ([] when already there)."""
        if current == target:
            return []
        chains = self._shortest_chains(current)
        if target not in chains:
            raise InvalidTransition(current, target, [t["state"] for t in self.available(current)])
        return chains[target]

    def available(self, current: str, write_locked: bool = False) -> list[dict[str, str]]:
        """``available_transitions``: reachable states with the verb of the chain's last job."""
        if write_locked or current in self.immutable_states:
            return []
        offered = []
        for state, chain in self._shortest_chains(current).items():
            verb = chain[-1].verb
            if verb:
                offered.append({"state": state, "verb": verb})
        return sorted(offered, key=lambda t: t["state"])

    def _shortest_chains(self, current: str) -> dict[str, list[Transition]]:
        """Breadth-first over the table: the first chain found to a state is a shortest one."""
        cache: dict[str, dict[str, list[Transition]]] = self._chains  # type: ignore[attr-defined]
        if current not in cache:
            cache[current] = self._search(current)
        return cache[current]

    def _search(self, current: str) -> dict[str, list[Transition]]:
        chains: dict[str, list[Transition]] = {}
        queue = collections.deque([(current, [])])
        seen = {current}
        while queue:
            state, chain = queue.popleft()
            for t in self._leaving(state):
                if t.to_state not in seen:
                    seen.add(t.to_state)
                    chains[t.to_state] = [*chain, t]
                    queue.append((t.to_state, chains[t.to_state]))
        return chains

    def _leaving(self, state: str) -> Iterable[Transition]:
        return (t for t in self.transitions if state in t.from_states)
