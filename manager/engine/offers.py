"""What a page of objects may do now: the transitions, jobs and actions the API offers for
each object, and the unfinished jobs whose locks it is held by.

Runs on a database thread; two queries per page whatever its size (the host list builds
this for 1,000 hosts at a time).
"""

from __future__ import annotations

from typing import Any

from manager.db.engine import JobLock
from manager.engine.registry import Registry

SHORT_PAGE = 100  # ids named in the lock query up to this many


def locks_of(object_type: str, object_ids: list[int]) -> dict[int, dict[str, list[int]]]:
    """For each object, the unfinished jobs holding read and write locks on it.

    A long page reads every unreleased lock of the type (as many as there are unfinished
    jobs' locks) rather than naming each id: building an IN list of 1,000 ids took peewee
    longer than the query took to run."""
    held: dict[int, dict[str, list[int]]] = {}
    wanted = set(object_ids)
    query = (JobLock.select(JobLock.object_id, JobLock.job, JobLock.write)
             .where(JobLock.object_type == object_type, JobLock.released == False))
    if len(object_ids) <= SHORT_PAGE:
        query = query.where(JobLock.object_id.in_(object_ids))
    for object_id, job_id, write in query.order_by(JobLock.job).tuples():
        if object_id in wanted:
            entry = held.setdefault(object_id, {"read": [], "write": []})
            entry["write" if write else "read"].append(job_id)
    return held


def available_for(registry: Registry, object_type: str, rows: list[Any], state_of: Any
                  ) -> dict[int, dict[str, Any]]:
    """``available_transitions``, ``available_jobs``, ``available_actions`` and ``locks``
    for a page of one class's rows (two queries, whatever the page size). Transitions
    depend only on the state, so each state's are built once per page."""
    cls = registry.stateful(object_type)
    locks = locks_of(object_type, [r.id for r in rows])
    jobs = registry.non_state_jobs(object_type)
    by_state: dict[str, list[dict[str, Any]]] = {}
    free = {"read": [], "write": []}
    out = {}
    for row in rows:
        held = locks.get(row.id, free)
        busy = bool(held["write"])
        state = state_of(row)
        if busy:
            transitions = []
        elif state in by_state:
            transitions = by_state[state]
        else:
            transitions = by_state[state] = [
                {**t, "long_description": t["verb"], "display_group": 2, "display_order": 10 + n}
                for n, t in enumerate(cls.machine.available(state))]
        offered = [  # a job that preempts (Force Remove) is what a busy object needs most
            {"verb": j.verb, "class_name": j.name, "args": {cls.id_arg: row.id},
             "confirmation": j.confirmation, "long_description": j.long_description,
             "display_group": 3, "display_order": j.display_order}
            for j in jobs if (j.preempts or not busy) and j.available(row)]
        actions = transitions + offered
        if offered:
            actions.sort(key=_display_order)
        out[row.id] = {"available_transitions": transitions, "available_jobs": offered,
                       "available_actions": actions, "locks": held}
    return out


def _display_order(action: dict[str, Any]) -> int:
    return action["display_order"]
