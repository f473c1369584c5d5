"""``shepherd node list|import|set`` against the real manager, and the node tables' layout
against stored expected output."""

import datetime
import json

import pytest

from api.cli import nodes, output
from tests.cli.golden import check_expected, sample

NOW = datetime.datetime(2026, 11, 24, 9, 0, tzinfo=datetime.UTC)  # the sample's, 13 min later

CSV = """xname,hostname,role,sub_role,groups,enabled,macs,architecture
x3000c0s19b1n0,nid000001,Compute,Worker,rack3;gpu,true,b4:2e:99:00:01:10,x86_64
x3000c0s19b2n0,nid000002,compute,,rack3,false,b4:2e:99:00:01:20;b4:2e:99:00:01:21,x86_64
x3000c0s2b0n0,nid000003,Compute,,rack3,,,aarch64
x3000c0s30b0n0,uan01,Application,UAN,,yes,,
"""


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
def test_node_table(wide):
    text = output.table_text(sample("nodes.json"), nodes.COLUMNS, wide=wide)
    check_expected(f"nodes{'-wide' if wide else ''}.txt", text)


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
def test_node_details(wide):
    text = output.detail_text(sample("nodes.json")[1], nodes.DETAILS, wide=wide, width=100,
                              now=NOW)
    check_expected(f"node-show{'-wide' if wide else ''}.txt", text)


def listed(shepherd, *args):
    result = shepherd("node", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [n["xname"] or n["hostname"] for n in json.loads(result.stdout)]


def test_import_a_csv_then_list_with_filters(shepherd, logged_in, tmp_path):
    path = tmp_path / "nodes.csv"
    path.write_text(CSV)
    dry = shepherd("node", "import", str(path), "--dry-run")
    assert dry.exit_code == 0
    assert dry.stdout == "Would import 4 nodes: 4 created, 0 updated, 0 unchanged.\n"
    assert shepherd("node", "list").stderr == "No nodes.\n"
    done = shepherd("node", "import", str(path))
    assert done.exit_code == 0
    assert done.stdout == "Imported 4 nodes: 4 created, 0 updated, 0 unchanged.\n"
    assert listed(shepherd) == ["x3000c0s2b0n0", "x3000c0s19b1n0", "x3000c0s19b2n0",
                                "x3000c0s30b0n0"]
    assert listed(shepherd, "--role", "Compute", "--group", "rack3") == [
        "x3000c0s2b0n0", "x3000c0s19b1n0", "x3000c0s19b2n0"]
    assert listed(shepherd, "--group", "gpu") == ["x3000c0s19b1n0"]
    assert listed(shepherd, "--disabled") == ["x3000c0s19b2n0"]
    assert listed(shepherd, "--enabled", "--role", "application") == ["x3000c0s30b0n0"]
    rows = json.loads(shepherd("node", "list", "--json").stdout)
    second = next(n for n in rows if n["xname"] == "x3000c0s19b2n0")
    assert (second["role"], second["sub_role"], second["macs"]) == (
        "Compute", "", ["b4:2e:99:00:01:20", "b4:2e:99:00:01:21"])
    table = shepherd("node", "list").stdout.splitlines()
    assert table[0].split() == ["XNAME", "HOSTNAME", "ROLE", "SUB-ROLE", "GROUPS", "ENABLED"]
    assert table[1].split() == ["x3000c0s2b0n0", "nid000003", "Compute", "-", "rack3", "yes"]
    wide = shepherd("node", "list", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-5:] == ["ID", "ARCH", "MACS", "OUTLET", "HOST"]
    # importing again changes nothing; an edited row updates its node
    again = shepherd("node", "import", str(path))
    assert again.stdout == "Imported 4 nodes: 0 created, 0 updated, 4 unchanged.\n"
    path.write_text(CSV.replace("nid000003,Compute", "nid000003,Storage"))
    edited = shepherd("node", "import", str(path))
    assert edited.stdout == "Imported 4 nodes: 0 created, 1 updated, 3 unchanged.\n"


def test_import_json(shepherd, logged_in, tmp_path):
    plain = tmp_path / "nodes.json"
    plain.write_text(json.dumps([{"xname": "x1c0s0b0n0", "groups": ["a"]}]))
    assert shepherd("node", "import", str(plain)).stdout == \
        "Imported 1 node: 1 created, 0 updated, 0 unchanged.\n"
    wrapped = tmp_path / "export.txt"
    wrapped.write_text(json.dumps({"objects": [{"xname": "x1c0s0b0n0", "enabled": False},
                                               {"hostname": "login1"}]}))
    assert shepherd("node", "import", str(wrapped)).stdout == \
        "Imported 2 nodes: 1 created, 1 updated, 0 unchanged.\n"
    assert listed(shepherd, "--disabled") == ["x1c0s0b0n0"]


@pytest.mark.parametrize("name,content,message", [
    ("bad.csv", "xname,rack\nx1c0s0b0n0,3\n",
     ("bad.csv: unknown column 'rack' (columns: xname, hostname, role, sub_role, groups, "
      "enabled, macs, architecture)")),
    ("empty.csv", "", "empty.csv: no header row"),
    ("extra.csv", "xname\nx1c0s0b0n0,3\n", "extra.csv line 2: more cells than columns"),
    ("flag.csv", "xname,enabled\nx1c0s0b0n0,maybe\n",
     "flag.csv line 2: enabled must be true or false"),
    ("bad.json", "[{", "bad.json: not valid JSON"),
    ("dict.json", '{"nodes": []}', 'dict.json: expected a list of nodes or {"objects": [...]}'),
    ("rows.csv", "xname,role\nx1c0s0b0n0,Compute\nx1c0s0b0,Compute\nx1c0s0b0n2,Boss\n",
     ("objects: objects[1].xname: Not a node xname: x<cabinet>c<chassis>s<slot>b<bmc>n<node>, "
      "e.g. x3000c0s19b1n0.; objects[2].role: Must be one of: Compute, Service, System, "
      "Application, Storage, Management.")),
])
def test_import_refusals_name_the_file_and_row(shepherd, logged_in, tmp_path, name, content,
                                               message):
    path = tmp_path / name
    path.write_text(content)
    result = shepherd("node", "import", str(path))
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    assert shepherd("node", "list").stderr == "No nodes.\n"  # all or nothing


def test_node_set(shepherd, logged_in, tmp_path):
    path = tmp_path / "nodes.csv"
    path.write_text(CSV)
    shepherd("node", "import", str(path))
    changed = shepherd("node", "set", "x3000c0s19b1n0", "--group-add", "spare",
                       "--group-add", "rack3", "--group-remove", "gpu", "--disable", "--json")
    assert changed.exit_code == 0, changed.output
    node = json.loads(changed.stdout)
    assert (node["groups"], node["enabled"]) == (["rack3", "spare"], False)
    by_hostname = shepherd("node", "set", "uan01", "--role", "Service", "--sub-role", "")
    assert by_hostname.exit_code == 0
    assert "Role          Service" in by_hostname.stdout
    by_id = shepherd("node", "set", str(node["id"]), "--enable", "--json")
    assert json.loads(by_id.stdout)["enabled"] is True
    refused = shepherd("node", "set", "uan01", "--role", "Wizard")
    assert refused.exit_code == 1 and refused.stderr.startswith("Error: role: Must be one of:")
    missing = shepherd("node", "set", "x9c9s9b9n9", "--disable")
    assert missing.exit_code == 1 and missing.stderr == "Error: no node 'x9c9s9b9n9'\n"
    nothing = shepherd("node", "set", "uan01")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
