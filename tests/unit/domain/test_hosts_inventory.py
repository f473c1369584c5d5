"""What an agent reports of itself is read defensively: a boot time it cannot mean is none."""

from __future__ import annotations

import datetime

import pytest

from manager.domain import hosts


def test_a_boot_time_as_protobuf_json_gives_it_as_a_string():
    assert hosts.boot_time_of({"boot_time": "1700000000"}) == datetime.datetime(2023, 11, 14,
                                                                                22, 13, 20)


@pytest.mark.parametrize("value", ["\u00b33", "-5", "", "12.5", True, 0, 2**40, None, [1]])
def test_a_boot_time_that_is_no_time_is_none(value):
    # "³3" passes str.isdigit but not int(): it must not end the agent's registration
    assert hosts.boot_time_of({"boot_time": value}) is None
