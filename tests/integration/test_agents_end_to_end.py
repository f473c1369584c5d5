"""Real manager, real ``shepherd-agent`` processes, each agent in its own network namespace.

The manager runs in this process (``RunningManager``, bound to 0.0.0.0); every agent is a
separate ``python -m agent`` process inside a ``NetnsHost`` with its own state directory,
reaching the manager at its namespace's gateway. The tests cover onboarding with a token,
the refusals ``register`` must explain, removal, a manager restart, a network cut, an agent
killed mid-action, and onboarding over SSH.
"""

from __future__ import annotations

import datetime
import shlex
import signal
import subprocess
import sys

import pytest

from api.client import ShepherdError
from manager.config import ConfigError
from manager.db.hosts import Action, RegistrationToken
from manager.domain.errors import NotFound
from tests.agents_fixture import AGENT, AgentProcess, Lan, holds_for, wait_until
from tests.sshd import Sshd

CONNECT_TIMEOUT = 20  # first connection: process start, TLS, Hello/Welcome


@pytest.fixture
def agents(tmp_path, hosts):
    """``agents(i)`` → an AgentProcess on hosts[i]; every one is killed at teardown."""
    made: list[AgentProcess] = []

    def make(index: int) -> AgentProcess:
        agent = AgentProcess(hosts[index], str(tmp_path / f"agent{index}"), f"node{index}.test")
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.kill()


def onboard(lan: Lan, agent: AgentProcess, token: dict | None = None) -> AgentProcess:
    """Register (with a fresh token unless given) and run until the manager sees it."""
    done = agent.register(lan, token or lan.token())
    assert done.returncode == 0, done.stderr
    agent.start()
    wait_until(lambda: (lan.host(agent.host_id) or {}).get("connected"), CONNECT_TIMEOUT,
               f"{agent.fqdn} to connect")
    return agent


# --- 1. onboarding with one token, actions, inventory, status ------------------------------

def test_two_agents_register_with_one_token_and_run_actions(lan, agents, hosts):
    token = lan.token(credits=2)
    command = shlex.split(token["register_command"].split(" && ")[1])  # install, register, start
    assert command[:2] == ["shepherd-agent", "register"]
    assert command[command.index("--manager") + 1] == lan.url_for(hosts[0])
    pair = [agents(0), agents(1)]
    for agent in pair:
        done = agent.register(lan, command[command.index("--token") + 1])
        assert done.returncode == 0, done.stderr
        assert f"as host {agent.host_id} " in done.stdout
        agent.start()
    credits = lan.manager.db(lambda: RegistrationToken.get_by_id(token["id"]).credits)
    assert credits == 0

    def both_connected():
        listed = {h["id"]: h for h in lan.admin.get("/api/host/")["objects"]}
        return listed if all(listed.get(a.host_id, {}).get("connected") for a in pair) else None

    listed = wait_until(both_connected, CONNECT_TIMEOUT, "both agents to connect")
    for agent in pair:
        host = listed[agent.host_id]
        assert host["address"] == agent.host.address
        assert host["fqdn"] == agent.fqdn and host["install_method"] == "agent"
        outcome = lan.dispatch(agent.host_id, "agent.ping", {"echo": agent.fqdn}, timeout=15)
        assert outcome.ok, outcome.error
        assert outcome.result == {"pong": True, "echo": agent.fqdn, "fqdn": agent.fqdn}
        report = lan.dispatch(agent.host_id, "report.inventory", {}, timeout=15)
        assert report.ok, report.error
        addresses = [a for i in report.result["interfaces"] for a in i.get("addresses", [])]
        assert f"{agent.host.address}/30" in addresses
        assert f"{hosts[1 - pair.index(agent)].address}/30" not in addresses
        status = agent.status()
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"host {agent.host_id} ({agent.fqdn})" in status.stdout


# --- 2. refusals ---------------------------------------------------------------------------

def _spoil(lan: Lan, agent: AgentProcess, token: dict, how: str) -> dict | str:
    """Make ``token`` unusable in the way ``how`` names; returns what to register with."""
    if how == "expired":
        past = datetime.datetime(2000, 1, 1)
        lan.manager.db(lambda: RegistrationToken.update(expiry=past)
                       .where(RegistrationToken.id == token["id"]).execute())
    elif how == "cancelled":
        lan.admin.request("PATCH", token["resource_uri"], json_body={"cancelled": True})
    elif how == "exhausted":
        assert agent.register(lan, token).returncode == 0  # spends the only credit
    elif how == "unknown":
        return "Q" * 16
    return token


@pytest.mark.parametrize("how,message", [
    ("expired", "registration token has expired"),
    ("cancelled", "registration token has been cancelled"),
    ("exhausted", "registration token has no credits left"),
    ("unknown", "unknown registration token"),
])
def test_register_refusals_say_why(lan, agents, how, message):
    token = _spoil(lan, agents(0), lan.token(credits=1), how)
    refused = agents(1)
    done = refused.register(lan, token)
    assert done.returncode == 1
    assert done.stderr == f"shepherd-agent: registration refused: {message}\n"
    assert not [f for f in refused.files() if f.endswith(("agent.json", ".pem"))]
    expected_hosts = 1 if how == "exhausted" else 0
    assert lan.admin.get("/api/host/")["meta"]["total_count"] == expected_hosts


def test_register_token_from_the_environment(lan, agents):
    agent = agents(0)
    done = agent.host.run(*AGENT, "register", "--manager", lan.url_for(agent.host),
                          "--ca-sha256", lan.fingerprint, "--fqdn", agent.fqdn,
                          "--state-dir", agent.state_dir, timeout=30,
                          env={"SHEPHERD_AGENT_TOKEN": lan.token()["secret"], "PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    assert "registered node0.test as host " in done.stdout


def test_wrong_ca_fingerprint_writes_nothing(lan, agents):
    agent = agents(0)
    token = lan.token()
    wrong = "ab" * 32
    done = agent.cli("register", "--manager", lan.url_for(agent.host), "--token",
                     token["secret"], "--ca-sha256", wrong, "--fqdn", agent.fqdn)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "fingerprint" in lines[0], done.stderr
    assert agent.files() == []  # (prepare() creates the empty directories up front)
    assert lan.manager.db(lambda: RegistrationToken.get_by_id(token["id"]).credits) == 1


def test_removed_host_is_gone_and_its_agent_is_refused(lan, agents):
    agent = onboard(lan, agents(0))
    assert not lan.remove(agent.host_id)["errored"]
    assert lan.host(agent.host_id) is None
    with pytest.raises(ShepherdError) as err:
        lan.admin.get(f"/api/host/{agent.host_id}/")
    assert err.value.status == 404
    with pytest.raises(NotFound, match=f"no such host: {agent.host_id}"):
        lan.submit(agent.host_id, "agent.ping")
    agent.kill(signal.SIGTERM)  # a restarted agent presents the revoked certificate
    agent.start()
    wait_until(lambda: "certificate refused" in agent.log(), 15, "the refusal to be logged")
    # status.json is written just after the log line: wait for it rather than race it
    status = wait_until(lambda: (s := agent.status()) and "certificate refused" in s.stdout and s,
                        10, "status to report the refusal")
    assert status.returncode == 3


def test_removing_a_host_ends_its_live_stream(lan, agents):
    agent = onboard(lan, agents(0))
    lan.remove(agent.host_id)
    timeout = lan.manager.config.contact_timeout + 2
    wait_until(lambda: agent.status().returncode == 3, timeout, "the agent to be cut off")


# --- 3. manager restart --------------------------------------------------------------------

def test_actions_survive_a_manager_restart_and_run_once(lan, agents):
    """A sleep running on a connected agent and a ping queued for an agent not yet running
    both complete exactly once across a manager restart (same state, database and ports)."""
    running = onboard(lan, agents(0))
    idle = agents(1)
    assert idle.register(lan, lan.token()).returncode == 0
    sleep_id = lan.submit(running.host_id, "agent.sleep", {"seconds": 3}, timeout=60)
    ping_id = lan.submit(idle.host_id, "agent.ping", {"echo": "queued"}, timeout=60)
    wait_until(lambda: running.starts(sleep_id), 10, "the sleep to start")
    lan.restart()
    idle.start()
    sleep, ping = lan.wait(sleep_id, 40), lan.wait(ping_id, 40)
    assert sleep.ok and sleep.result == {"slept": 3}, sleep.error
    assert ping.ok and ping.result["echo"] == "queued", ping.error
    wait_until(running.connected, CONNECT_TIMEOUT, "the agent to reconnect")
    assert running.starts(sleep_id) == 1 and idle.starts(ping_id) == 1
    assert running.starts(ping_id) == idle.starts(sleep_id) == 0
    # still running at the reconnect, the agent's Hello named it and it was not sent again;
    # finished by then, it was sent again and answered from the outbox
    assert f"action {sleep_id} is already running" not in running.log(), running.log()
    states = lan.manager.db(lambda: {a.id: a.state for a in Action.select()})
    assert states[sleep_id] == "succeeded" and states[ping_id] == "succeeded"
    # the hosts' set-up actions: the idle host's set-up may still be running after the ping
    wait_until(lambda: set(lan.manager.db(lambda: [a.state for a in Action.select()]))
               <= {"succeeded"}, 30, "every set-up action to succeed")
    # the agent forgets a result once the manager acknowledged it
    wait_until(lambda: not [f for f in running.files() if f.startswith("outbox/")], 10,
               "the outbox to empty")


# --- 4. network cut ------------------------------------------------------------------------

def test_network_cut_raises_an_alert_and_queued_ping_runs_once_after(lan, agents):
    agent = onboard(lan, agents(0))
    agent.host.link(False)
    try:
        alerts = wait_until(lambda: lan.contact_alerts(agent.host_id), 20, "a HostContactAlert")
        assert alerts[0]["alert_item"] == f"/api/host/{agent.host_id}/"
        assert alerts[0]["message"] == f"Lost contact with host {agent.fqdn}"
        assert not lan.host(agent.host_id)["connected"]
        ping_id = lan.submit(agent.host_id, "agent.ping", {"echo": "after the cut"}, timeout=60)
    finally:
        agent.host.link(True)
    outcome = lan.wait(ping_id, 45)
    assert outcome.ok and outcome.result["echo"] == "after the cut", outcome.error
    wait_until(lambda: not lan.contact_alerts(agent.host_id), 10, "the alert to end")
    assert lan.host(agent.host_id)["connected"]
    assert agent.starts(ping_id) == 1


def test_heartbeats_slower_than_the_contact_timeout_do_not_cut_healthy_agents(tmp_path, hosts,
                                                                              agents):
    try:  # RunningManager's contact_timeout of 3 s with the default 10 s heartbeat
        lan = Lan(str(tmp_path), hosts, heartbeat_interval=10).start()
    except ConfigError:
        return  # refusing the combination would be a fix as good as tolerating it
    try:
        agent = onboard(lan, agents(0))
        closed = "stream closed by the manager"
        assert holds_for(lambda: closed not in agent.log(), 3 * lan.manager.config.contact_timeout)
    finally:
        lan.stop()


# --- 5. agent killed mid-action ------------------------------------------------------------

def test_agent_killed_mid_action_fails_it_at_the_deadline(lan, agents):
    agent = onboard(lan, agents(0))
    action_id = lan.submit(agent.host_id, "agent.sleep", {"seconds": 30}, timeout=4)
    wait_until(lambda: agent.starts(action_id), 5, "the sleep to start")
    agent.kill(signal.SIGKILL)
    outcome = lan.wait(action_id, 15)
    assert not outcome.ok and "deadline passed" in outcome.error
    assert lan.manager.db(lambda: Action.get_by_id(action_id).state) == "failed"
    # a restarted agent is not handed the dead action again, and nothing is left running
    agent.start()
    wait_until(agent.connected, CONNECT_TIMEOUT, "the agent to reconnect")
    assert lan.dispatch(agent.host_id, "agent.ping", timeout=10).ok
    assert agent.starts(action_id) == 1
    assert lan.manager.db(lambda: Action.get_by_id(action_id).state) == "failed"


# --- 6. onboarding over SSH ----------------------------------------------------------------

@pytest.fixture
def ssh_lan(tmp_path, hosts):
    """A manager whose SSH install runs this checkout's agent on hosts[0] through sshd.

    ``agent_command`` is a wrapper that appends the test's --state-dir (and, for
    register, an --fqdn) after the subcommand the manager passes; ``agent_start_command``
    starts ``run`` detached, as systemd would."""
    state_dir, log = tmp_path / "ssh-agent", tmp_path / "ssh-agent.log"
    wrapper = tmp_path / "shepherd-agent"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$1" in register) set -- "$@" --fqdn ssh-node.test ;; esac\n'
        f'exec {shlex.quote(sys.executable)} -m agent "$@" --state-dir {state_dir}\n')
    wrapper.chmod(0o755)
    with Sshd(hosts[0], str(tmp_path / "sshd")) as sshd:
        running = Lan(str(tmp_path), hosts, agent_install_command="true",
                      agent_command=str(wrapper), ssh_timeout=60,
                      agent_start_command=f"setsid {wrapper} run > {log} 2>&1 < /dev/null &")
        running.start()
        yield running, sshd, AgentProcess(hosts[0], str(state_dir), "ssh-node.test")
        running.stop()


def test_host_added_over_ssh_registers_and_connects(ssh_lan):
    lan, sshd, agent = ssh_lan
    host = lan.admin.post("/api/host/", {"address": f"root@{agent.host.address}",
                                         "private_key": sshd.private_key(),
                                         "server_profile": "compute_node"})
    assert host["fqdn"] == "ssh-node.test" and host["install_method"] == "ssh"
    assert host["server_profile"]["name"] == "compute_node"
    assert host["address"] == agent.host.address
    wait_until(lambda: lan.host(host["id"])["connected"], CONNECT_TIMEOUT, "the agent to connect")
    assert agent.connected()
    outcome = lan.dispatch(host["id"], "agent.ping", {"echo": "over ssh"}, timeout=10)
    assert outcome.ok and outcome.result["fqdn"] == "ssh-node.test"
    # the one-time token is cancelled, and its secret was left in no file on the host
    tokens = lan.manager.db(lambda: list(RegistrationToken.select()))
    assert [t.cancelled for t in tokens] == [True]
    for name in agent.files():
        try:
            with open(f"{agent.state_dir}/{name}", "rb") as f:
                assert tokens[0].secret.encode() not in f.read(), name
        except FileNotFoundError:
            continue  # an acknowledged result the agent removed meanwhile
    assert tokens[0].secret not in agent.log()


def test_host_with_a_wrong_key_is_refused_and_not_created(ssh_lan, tmp_path):
    lan, _, agent = ssh_lan
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    with pytest.raises(ShepherdError) as err:
        lan.admin.post("/api/host/", {"address": f"root@{agent.host.address}",
                                      "private_key": stranger.read_text(),
                                      "server_profile": "compute_node"})
    assert err.value.status == 400 and list(err.value.body) == ["address"]
    assert "authentication" in err.value.body["address"]
    assert lan.admin.get("/api/host/")["meta"]["total_count"] == 0
    assert agent.files() == []
