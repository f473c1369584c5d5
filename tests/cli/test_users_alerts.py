"""``shepherd user …`` and ``shepherd alert …`` against the real manager."""

import datetime
import json

from api.client import Client
from manager.db.accounts import User
from manager.db.hosts import Alert
from tests.cli.golden import check_expected

PASSWORD = "alice-password-1"


def test_user_create_list_set_password_delete(shepherd, logged_in):
    created = shepherd("user", "create", "alice", "--email", "alice@example.com", "--first-name",
                       "Alice", "--last-name", "Liddell", "-g", "filesystem_administrators",
                       "--password-stdin", input=f"{PASSWORD}\n")
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("Created user alice (id ")
    bob = shepherd("user", "create", "bob", "--superuser", "--json", input="bob-password-1\nbob-password-1\n")
    assert json.loads(bob.stdout)["is_superuser"] is True
    assert shepherd("user", "create", "carol", "--password-stdin", input="carol-password\n").exit_code == 0
    check_expected("users-live.txt", shepherd("user", "list").stdout)
    changed = shepherd("user", "set-password", "alice", "--password-stdin", input="fresh-password-2\n")
    assert changed.stdout == "Changed the password of alice.\n"
    Client(logged_in.url, verify=logged_in.ca_path).login("alice", "fresh-password-2")
    assert shepherd("user", "delete", "alice", "--yes").stdout == "Deleted user alice.\n"
    assert [u["username"] for u in json.loads(shepherd("user", "list", "--json").stdout)] == [
        "admin", "bob", "carol"]


def test_long_lists_are_paged_through(shepherd, logged_in):
    def add_users():
        User.insert_many([{"username": f"user{i:03d}", "password_hash": "x"} for i in range(250)]).execute()
    logged_in.db(add_users)
    users = json.loads(shepherd("user", "list", "--json").stdout)
    assert len(users) == 251 and users[-1]["username"] == "user249"
    assert len(shepherd("user", "list").stdout.splitlines()) == 252


def test_user_errors_carry_the_servers_message(shepherd, logged_in):
    result = shepherd("user", "create", "admin", "--password-stdin", input="another-password\n")
    assert result.exit_code == 1
    assert result.stderr == "Error: username: A user with that username already exists.\n"
    short = shepherd("user", "create", "dave", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and short.stderr.startswith("Error: password1: Password must be")
    assert shepherd("user", "delete", "nobody", "--yes").stderr == "Error: no user named 'nobody'\n"
    assert shepherd("user", "delete", "admin", "--yes").stderr == (
        "Error: You cannot delete your own account.\n")
    typo = shepherd("user", "set-password", "admin", input="one-password\nother-password\n")
    assert typo.exit_code == 1  # the two prompts disagree; click asks again until input ends


def add_alert(manager, **fields) -> int:
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    row = {"alert_type": "HostContactAlert", "severity": "WARNING", "alert_item_type": "host",
           "alert_item_id": 1, "alert_item_str": "node1.example", "begin": now, "created_at": now,
           "message": "Lost contact with host node1.example", **fields}
    return manager.db(lambda: Alert.create(**row).id)


def test_alert_list_active_and_dismiss(shepherd, logged_in):
    current = add_alert(logged_in)
    add_alert(logged_in, active=None, alert_item_id=2, alert_item_str="node2.example",
              message="Lost contact with host node2.example", end=datetime.datetime(2026, 1, 1))
    every = json.loads(shepherd("alert", "list", "--json").stdout)
    assert {a["alert_item_str"] for a in every} == {"node1.example", "node2.example"}
    active = json.loads(shepherd("alert", "list", "--active", "--json").stdout)
    assert [a["id"] for a in active] == [current]
    table = shepherd("alert", "list", "--active").stdout.splitlines()
    assert table[0].split() == ["ID", "SEVERITY", "SUBJECT", "MESSAGE", "BEGAN", "ACTIVE"]
    assert table[1].split()[:3] == [str(current), "WARNING", "node1.example"]
    assert shepherd("alert", "dismiss", str(current)).stdout == f"Dismissed alert {current}.\n"
    assert json.loads(shepherd("alert", "list", "--undismissed", "--json").stdout)[0]["id"] != current
    missing = shepherd("alert", "dismiss", "999999")
    assert missing.exit_code == 1 and missing.stderr == "Error: alert 999999 does not exist\n"


def test_no_alerts_is_said_on_stderr(shepherd, logged_in):
    result = shepherd("alert", "list")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == "No alerts.\n"




def test_audit_list_shows_who_did_what(shepherd, logged_in):
    created = shepherd("user", "create", "erin", "--password-stdin", input="erin-password-1\n")
    assert created.exit_code == 0, created.output
    records = json.loads(shepherd("audit", "list", "--object-type", "user", "--json").stdout)
    assert [(r["username"], r["method"], r["status"]) for r in records] == [("admin", "POST", 201)]
    assert "erin-password-1" not in json.dumps(records)
    table = shepherd("audit", "list", "--kind", "login").stdout.splitlines()
    assert table[0].split()[:4] == ["WHEN", "USER", "KIND", "METHOD"]
    assert any(" login " in line for line in table[1:])
    assert shepherd("audit", "list", "--user", "nobody").stderr.startswith("No audit records")
