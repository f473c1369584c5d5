"""``kill -9`` of a manager process while agent actions are in flight and queued: after the
restart every action is delivered, run and its result stored exactly once.

The manager is ``shepherd-manager serve`` in a child process (``ManagerProcess``), killed
with SIGKILL and started again on the same state directory, database and ports. At the
kill, one agent is running a job's ``agent.sleep`` and the other host's set-up action waits,
``queued``, for an agent that is not running yet. Either the sleep is still running when
its agent reconnects (its Hello says so, and the manager does not send it again), or it finished
while the manager was down (its result waits in the agent's outbox and is sent twice: once
after Welcome, once more for the redelivery; the manager keeps the first).

No product job keeps an agent busy long enough to be caught mid-run, so the child manager
declares one more job class before the manager's own ``main`` runs (``serve``):
``SleepHostJob``, one step running ``agent.sleep`` for ``seconds``. Everything else is the
product's ``serve``; the test drives it through the REST API and reads its SQLite database.
Executions are counted on the agents' side, from their logs.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sqlite3
import sys
from typing import Any

import pytest

from api.client import Client
from manager.engine.registry import JobClass, StepSpec
from tests.agents_fixture import AgentProcess, ManagerProcess, wait_until

SLEEP_JOB = JobClass("SleepHostJob", "host", "Sleep on {label}", verb="Sleep",
                     available=lambda host: host.state == "working",
                     steps=lambda a: [StepSpec("SleepStep", "agent.sleep", action="agent.sleep",
                                               args=lambda a: {"seconds": a["seconds"]},
                                               timeout=120)])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# ``python -c`` leaves ["-c", "serve", ...] in sys.argv, which click reads as usual
SERVE = [sys.executable, "-c",
         f"import sys; sys.path.insert(0, {ROOT!r}); from {__name__} import serve; serve()"]


def serve() -> None:
    """The child manager: ``shepherd-manager`` with ``SleepHostJob`` declared."""
    from manager.__main__ import main
    from manager.engine import registry

    registry.default.add_job(SLEEP_JOB)
    main()


@pytest.fixture
def lab(tmp_path, hosts):
    """A manager process and two registered agents, neither running yet."""
    manager = ManagerProcess(str(tmp_path), hosts, program=SERVE).start()
    agents = [AgentProcess(hosts[i], str(tmp_path / f"agent{i}"), f"node{i}.test")
              for i in range(2)]
    try:
        token = manager.admin().post("/api/registration_token/",
                                     {"profile": "compute_node", "credits": 2})
        for agent in agents:
            assert agent.register(manager, token["secret"]).returncode == 0, agent.log()
        yield manager, agents
    finally:
        for agent in agents:
            agent.kill()
        manager.stop()


def query(manager: ManagerProcess, sql: str, *params: Any) -> list[sqlite3.Row]:
    """Rows of the manager's database (a connection of our own; WAL lets us read)."""
    with sqlite3.connect(os.path.join(manager.state_dir, "shepherd.db"), timeout=10) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, params).fetchall()


def actions(manager: ManagerProcess, host_id: int) -> list[sqlite3.Row]:
    return query(manager, "SELECT * FROM action WHERE host_id = ? ORDER BY created_at", host_id)


def set_up(client: Client, agent: AgentProcess) -> dict[str, Any]:
    """The command that sets ``agent``'s host up (stored when it registered)."""
    commands = client.get("/api/command/", order_by="created_at")["objects"]
    return next(c for c in commands if c["message"] == f"Set up host {agent.fqdn}")


def finished(client: Client, command: dict[str, Any], timeout: float) -> dict[str, Any]:
    return wait_until(lambda: (c := client.get(command["resource_uri"]))["complete"] and c,
                      timeout, f"command {command['id']} ({command['message']})")


def started(agent: AgentProcess, name: str) -> str | None:
    """The id of the first ``name`` action the agent started, once it has."""
    found = re.search(rf": action (\w+) \({re.escape(name)}\) received$", agent.log(),
                      re.MULTILINE)
    return found.group(1) if found else None


def completed(client: Client, action: str) -> float:
    """``shepherd_actions_completed_total`` of one action name: results this manager
    process stored (a second copy of a result is not counted)."""
    text = client.request("GET", "/metrics").text
    found = re.search(rf'^shepherd_actions_completed_total\{{action="{re.escape(action)}",'
                      rf'outcome="succeeded"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # as the rows store it


@pytest.mark.parametrize("seconds,ends_while_down,redelivery", [
    (8, False, None),  # running when the agent is back: its Hello says so, it is not resent
    (2, True, "already finished; result sent again"),     # its result waits in the outbox
], ids=["running-at-reconnect", "finished-while-down"])
def test_kill_9_with_actions_in_flight_and_queued_runs_and_stores_each_once(
        lab, seconds, ends_while_down, redelivery):
    manager, (busy, idle) = lab
    admin = manager.admin()
    busy.start()
    assert not finished(admin, set_up(admin, busy), 30)["errored"]
    sleep = admin.post("/api/command/", {"message": "sleep", "jobs": [
        {"class_name": "SleepHostJob", "args": {"host_id": busy.host_id, "seconds": seconds}}]})
    sleep_id = wait_until(lambda: started(busy, "agent.sleep"), 15, "the sleep to start")
    queued = wait_until(lambda: actions(manager, idle.host_id), 10, "the idle host's action")
    assert [(a["name"], a["state"]) for a in queued] == [("host.validate", "queued")]
    assert [a["state"] for a in actions(manager, busy.host_id) if a["id"] == sleep_id] == ["sent"]

    manager.kill()
    killed_at = now()
    if ends_while_down:  # the result goes to the outbox: no manager to send it to
        wait_until(lambda: f"action {sleep_id} succeeded" in busy.log(), 10, "the sleep to end")
    idle.start()  # connects once the manager is back
    manager.start()
    admin = manager.admin()

    done = finished(admin, sleep, 40)
    assert (done["errored"], done["cancelled"]) == (False, False), done["logs"]
    assert not finished(admin, set_up(admin, idle), 40)["errored"]
    # the manager: one sleep action, its result stored after the restart, once, by one step
    (row,) = [a for a in actions(manager, busy.host_id) if a["name"] == "agent.sleep"]
    assert (row["id"], row["state"], json.loads(row["result"])) == (
        sleep_id, "succeeded", {"slept": seconds})
    assert utc(row["sent_at"]) < killed_at < utc(row["finished_at"])
    steps = query(manager, "SELECT * FROM step WHERE class_name = 'SleepStep'")
    assert [(s["action_id"], s["state"], s["attempt"], json.loads(s["result"])) for s in steps] \
        == [(sleep_id, "success", 0, {"slept": seconds})]
    assert completed(admin, "agent.sleep") == 1
    # the agents: each action run once; the sleep was delivered again and not run again
    if redelivery is None:
        assert f"action {sleep_id} is already running" not in busy.log(), busy.log()
    else:
        wait_until(lambda: redelivery in busy.log(), 10, "the sleep's redelivery")
        assert f"action {sleep_id} {redelivery}" in busy.log(), busy.log()
    assert busy.starts(sleep_id) == 1
    idle_actions = actions(manager, idle.host_id)
    assert [a["name"] for a in idle_actions] == ["host.validate", "report.inventory"]
    assert [idle.starts(a["id"]) for a in idle_actions] == [1, 1], idle.log()
    assert queued[0]["id"] == idle_actions[0]["id"]  # the queued action, not a new one
    # nothing is left running: every action, job and lock is finished, every result acked
    assert {a["state"] for a in query(manager, "SELECT state FROM action")} == {"succeeded"}
    assert query(manager, "SELECT id FROM job WHERE state <> 'complete'") == []
    assert query(manager, "SELECT id FROM job_lock WHERE released = 0") == []
    for agent in (busy, idle):
        ran = re.findall(r": action (\w+) \([^)]*\) received$", agent.log(), re.MULTILINE)
        ended = re.findall(r": action (\w+) succeeded$", agent.log(), re.MULTILINE)
        assert sorted(ran) == sorted(ended), agent.log()
        wait_until(lambda a=agent: not [f for f in a.files() if f.startswith("outbox/")], 10,
                   f"{agent.fqdn}'s outbox to empty")
