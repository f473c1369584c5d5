"""Power end to end: a BMC agent (``shepherd-agent simulate --roles bmc``: the real agent
code over the real protocol, with simulated BMCs behind its power drivers) powers nodes on
through the engine, and the outlet sweep reads every outlet back through it."""

import asyncio
import os
import subprocess
import sys
import time

import pytest

from manager.db.hosts import Action, Alert
from manager.domain.inventory import power_jobs
from tests.api.test_power_control import OUTLETS, SECRET, make_device, types  # noqa: F401
from tests.api.test_power_jobs import registered
from tests.api.test_registration import wait_for_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def bmc_agent(admin, accounts_reset, tmp_path):
    """One connected BMC agent; its host id."""
    token = admin.post("/api/registration_token/", {"profile": "power_controller",
                                                    "credits": 1})
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "simulate", "--manager", accounts_reset.url,
         "--ca-sha256", accounts_reset.manager.ctx.ca.fingerprint, "--count", "1",
         "--roles", "bmc", "--prefix", "bmc", "--state-dir", str(tmp_path), "-q"],
        cwd=ROOT, env={**os.environ, "SHEPHERD_AGENT_TOKEN": token["secret"]})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hosts = admin.get("/api/host/", limit=0)["objects"]
            ready = [h for h in hosts if h["connected"] and h["state"] == "working"]
            if ready:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the BMC agent did not connect and set up: {hosts}")
        yield ready[0]["id"]
    finally:
        proc.terminate()
        proc.wait(20)


def test_nodes_power_on_through_the_engine_and_the_sweep_reads_them(
        admin, accounts_reset, types, bmc_agent):  # noqa: F811
    registered(accounts_reset, admin, "spare.example")      # not a BMC agent: never asked
    outlets = []
    for n in range(3):
        device = make_device(admin, types, address=f"10.2.0.{n + 1}", name=f"bmc{n}")
        outlets.append(admin.post(OUTLETS, {"device": device["resource_uri"]}))
    nodes = admin.patch("/api/node/", {"objects": [
        {"xname": f"x1000c0s{n}b0n0", "role": "Compute", "outlet": outlets[n]["resource_uri"]}
        for n in range(3)]})
    assert nodes["created"] == 3
    node_ids = sorted(n["id"] for n in admin.get("/api/node/", limit=0,
                                                 xname__startswith="x1000")["objects"])

    command = admin.post("/api/command/", {"message": "Power on 2 nodes", "jobs": [
        {"class_name": "PoweronNodeJob", "args": {"node_id": i}} for i in node_ids[:2]]})
    done = wait_for_command(admin, command["resource_uri"], timeout=60)
    assert (done["errored"], done["cancelled"]) == (False, False), done["logs"]
    states = {o["id"]: o["has_power"] for o in admin.get(OUTLETS, limit=0)["objects"]}
    assert [states[o["id"]] for o in outlets] == ["On", "On", "Unknown"]
    # the agent needed the password; once the action finished it is no longer stored
    args = accounts_reset.db(lambda: [a.args for a in Action.select().where(
        Action.name == "power.on")])
    assert len(args) == 2 and not any(SECRET in a for a in args)

    figures = asyncio.run_coroutine_threadsafe(accounts_reset.manager.power_sweep.sweep(),
                                               accounts_reset.loop).result(60)
    assert (figures["outlets"], figures["ok"], figures["failed"]) == (3, 3, 0)
    states = {o["id"]: o["has_power"] for o in admin.get(OUTLETS, limit=0)["objects"]}
    assert [states[o["id"]] for o in outlets] == ["On", "On", "Off"]
    assert accounts_reset.db(lambda: Alert.select().where(
        Alert.alert_type == power_jobs.UNAVAILABLE).count()) == 0
