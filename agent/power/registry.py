"""The power drivers a real agent offers, by the name the manager uses in an outlet."""

from __future__ import annotations

from agent.power import PowerDriver
from agent.power.fence import FenceDriver
from agent.power.ipmi import IpmiDriver
from agent.power.redfish import RedfishDriver

DRIVERS: dict[str, PowerDriver] = {
    IpmiDriver.name: IpmiDriver(),
    RedfishDriver.name: RedfishDriver(),
    FenceDriver.name: FenceDriver(),
}
