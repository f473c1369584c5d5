"""Inventory of this very machine (real /proc, /sys and netlink) and of a fake sysfs."""

import json
import os

from agent import inventory


def test_inventory_shape_on_this_machine():
    facts = inventory.collect(fqdn="node1.example.com")
    assert facts["fqdn"] == "node1.example.com"
    assert facts["nodename"] == os.uname().nodename
    assert facts["boot_time"] > 1_000_000_000
    assert facts["cpu_count"] >= 1
    assert facts["memory_bytes"] > 64 * 1024 * 1024
    assert facts["architecture"] and facts["kernel"] == os.uname().release
    lo = next(i for i in facts["interfaces"] if i["name"] == "lo")
    assert "127.0.0.1/8" in lo["addresses"]
    assert lo["up"] and lo["mtu"] > 0
    for device in facts["block_devices"]:
        assert device["size_bytes"] > 0 or not device["name"].startswith(("loop", "ram"))
    json.dumps(facts)
    message = inventory.to_message(facts)
    assert message.fqdn == "node1.example.com"
    assert len(message.interfaces) == len(facts["interfaces"])


def _device(root, name, size, **attributes):
    base = root / name
    (base / "queue").mkdir(parents=True)
    (base / "device").mkdir()
    (base / "size").write_text(f"{size}\n")
    for attribute, value in attributes.items():
        (base / attribute.replace("__", "/")).write_text(value + "\n")


def test_block_devices_from_sysfs(tmp_path):
    _device(tmp_path, "sda", 2048, queue__rotational="1", device__model="ST1000  ",
            device__serial="Z1")
    _device(tmp_path, "nvme0n1", 4096, queue__rotational="0", serial="S2")
    _device(tmp_path, "loop0", 0)
    _device(tmp_path, "ram0", 0)
    assert inventory.block_devices(str(tmp_path)) == [
        {"name": "nvme0n1", "size_bytes": 4096 * 512, "model": "", "serial": "S2",
         "rotational": False},
        {"name": "sda", "size_bytes": 2048 * 512, "model": "ST1000", "serial": "Z1",
         "rotational": True},
    ]


def test_proc_files(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
    (tmp_path / "meminfo").write_text("MemTotal:       1024 kB\nMemFree: 1 kB\n")
    assert inventory.boot_time(str(tmp_path)) == 1700000000
    assert inventory.memory_bytes(str(tmp_path)) == 1024 * 1024
