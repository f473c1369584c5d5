"""The operations every driver shares (agent.power.control) against a scripted device, and
the drivers' own checks that need no network: options, addresses, error wording."""

import asyncio
import time

import pytest

from agent.power import (
    AuthenticationFailed,
    Connection,
    Limits,
    Misconfigured,
    NoAnswer,
    Outlet,
    PowerDriver,
    PowerError,
    Unsupported,
    parse_options,
)
from agent.power.control import perform
from agent.power.ipmi import IpmiDriver
from agent.power.redfish import RedfishDriver, base_url


class Device(Connection):
    """A node whose OS takes ``shutdown_s`` to honour a graceful shutdown (None: never),
    and which logs every command."""

    def __init__(self, power="on", shutdown_s=0.0, graceful=True):
        self.power, self.shutdown_s, self.graceful = power, shutdown_s, graceful
        self.log, self.off_at = [], None

    async def query(self):
        self.log.append("query")
        if self.off_at is not None and time.monotonic() >= self.off_at:
            self.power, self.off_at = "off", None
        return self.power

    async def on(self):
        self.log.append("on")
        self.power = "on"

    async def off(self):
        self.log.append("off")
        self.power, self.off_at = "off", None

    async def soft_off(self):
        self.log.append("soft_off")
        if not self.graceful:
            raise Unsupported("no graceful shutdown")
        if self.shutdown_s is not None:
            self.off_at = time.monotonic() + self.shutdown_s

    async def reset(self):
        self.log.append("reset")


class Scripted(PowerDriver):
    name = "scripted"
    default_port = 623

    def __init__(self, device=None, error=None):
        self.device_, self.error = device, error

    async def connect(self, outlet, limits):
        if self.error is not None:
            raise self.error
        return self.device_


OUTLET = Outlet(id=4, driver="ipmi", address="192.0.2.4", username="admin", password="pw-4")


def perform_one(operation, driver, timeout=5.0, graceful=0.0, item=OUTLET):
    limits = Limits(time.monotonic() + timeout, timeout)
    return asyncio.run(perform(operation, driver, item, limits, graceful))


def test_off_waits_for_the_graceful_shutdown_before_forcing():
    device = Device(shutdown_s=0.3)
    result = perform_one("power.off", Scripted(device), graceful=2.0)
    assert result["ok"] and result["power"] == "off"
    assert "off" not in device.log and device.log[:2] == ["query", "soft_off"]


def test_off_forces_when_the_os_ignores_the_shutdown():
    device = Device(shutdown_s=None)
    result = perform_one("power.off", Scripted(device), graceful=0.3)
    assert result["ok"] and device.log[-2:] == ["off", "query"]
    assert result["elapsed_ms"] >= 300


def test_off_is_direct_without_a_graceful_shutdown():
    device = Device(graceful=False)
    perform_one("power.off", Scripted(device), graceful=30.0)
    assert device.log == ["query", "soft_off", "off", "query"]


def test_nothing_is_sent_when_already_in_the_target_state():
    device = Device(power="off")
    assert perform_one("power.off", Scripted(device))["ok"]
    assert perform_one("power.status", Scripted(device))["power"] == "off"
    assert device.log == ["query", "query"]


def test_cycle_is_off_then_on_and_reset_is_a_reset():
    device = Device()
    perform_one("power.cycle", Scripted(device))
    assert device.log == ["query", "off", "query", "on", "query"]
    device.log.clear()
    perform_one("power.reset", Scripted(device))
    assert device.log == ["query", "reset", "query"]


@pytest.mark.parametrize("error, message", [
    (AuthenticationFailed(),
     "BMC at 192.0.2.4:623: authentication failed (wrong user name or password)"),
    (NoAnswer(), "no answer from BMC at 192.0.2.4:623 within 5s"),
    (NoAnswer("session lost", "BMC closed pw-4"),
     "no answer from BMC at 192.0.2.4:623 within 5s (session lost: BMC closed ********)"),
    (PowerError("refused power on", "said pw-4"),
     "BMC at 192.0.2.4:623: refused power on: said ********"),
])
def test_errors_name_the_device_its_address_and_the_cause_never_the_password(error, message):
    result = perform_one("power.on", Scripted(error=error))
    assert result == {"id": 4, "ok": False, "power": "unknown", "error": message,
                      "elapsed_ms": result["elapsed_ms"]}


def test_a_driver_bug_fails_its_outlet_only():
    result = perform_one("power.on", Scripted(error=KeyError("pw-4")))
    assert result["error"] == "BMC at 192.0.2.4:623: internal error: KeyError"


def test_a_device_that_never_answers_is_cut_off_at_the_deadline():
    class Silent(Device):
        async def query(self):
            await asyncio.sleep(60)

    start = time.monotonic()
    result = perform_one("power.status", Scripted(Silent()), timeout=0.3)
    assert result["error"] == "no answer from BMC at 192.0.2.4:623 within 0.3s"
    assert time.monotonic() - start < 1


def test_options_parse_as_fence_agents_read_them():
    assert parse_options(" lanplus --cipher=3  privlvl=operator --power-wait=2 ") == \
        {"lanplus": "1", "cipher": "3", "privlvl": "operator", "power_wait": "2"}
    with pytest.raises(Misconfigured):
        parse_options("-C 3")


@pytest.mark.parametrize("driver, options, refusal", [
    (IpmiDriver(), "bogus=1", "option 'bogus' is not understood by the ipmi driver"),
    (IpmiDriver(), "lanplus=0", "IPMI 1.5 (lanplus=0) is not supported"),
    (IpmiDriver(), "privlvl=root", "privlvl must be one of user, operator, administrator"),
    (RedfishDriver(), "auth=kerberos", "auth must be one of basic, session, auto"),
    (RedfishDriver(), "lanplus", "option 'lanplus' is not understood by the redfish driver"),
])
def test_real_drivers_refuse_what_they_cannot_honour_before_any_traffic(driver, options,
                                                                        refusal):
    item = Outlet(id=1, driver=driver.name, address="192.0.2.1", options=options)
    result = perform_one("power.status", driver, item=item)
    assert refusal in result["error"] and result["elapsed_ms"] < 100


def test_addresses_as_shown_and_as_dialled():
    ipmi, redfish = IpmiDriver(), RedfishDriver()
    assert ipmi.where(Outlet(1, "ipmi", "fd00::7")) == "[fd00::7]:623"
    assert ipmi.where(Outlet(1, "ipmi", "bmc1", port=6230)) == "bmc1:6230"
    assert redfish.where(Outlet(1, "redfish", "https://bmc1:8443")) == "https://bmc1:8443"
    assert base_url(Outlet(1, "redfish", "bmc1"), 443) == "https://bmc1"
    assert base_url(Outlet(1, "redfish", "fd00::7", port=8443), 443) == "https://[fd00::7]:8443"
    assert base_url(Outlet(1, "redfish", "http://127.0.0.1:8000/"), 443) == \
        "http://127.0.0.1:8000"


def test_an_outlet_never_shows_its_password():
    assert "pw-4" not in repr(OUTLET)


def test_a_transient_failure_is_tried_once_more_a_fatal_one_never():
    class Flaky(Device):
        def __init__(self, error):
            super().__init__(power="off")
            self.error = error

        async def on(self):
            self.log.append("on")
            if self.error is not None:
                error, self.error = self.error, None
                raise error
            self.power = "on"

    flaky = Flaky(PowerError("refused power on", "node busy"))
    assert perform_one("power.on", Scripted(flaky))["ok"]
    assert flaky.log == ["query", "on", "on", "query"]
    fatal = Flaky(AuthenticationFailed())
    assert not perform_one("power.on", Scripted(fatal))["ok"]
    assert fatal.log == ["query", "on"]
