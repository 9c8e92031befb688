"""The poller contract: what one poll of one device returns (`PollResult`), what a device
poller and a bus link provide (`DevicePoller`, `BusLink`), and the longest a legitimate poll
may take (`worst_poll_seconds`), which the bus loop's stall limit is built on.

The pollers (gateway.field.modbus_poller, gateway.field.serial_text) and the loop that runs them
(gateway.field.bus_loop) all import this module and not each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from gateway.clock import Clock
from gateway.config.profile import ModbusProfile, SerialTextProfile
from gateway.config.site import Device
from gateway.field.points import BoundPoint, bind_points
from gateway.field.sample import Sample
from gateway.records import dataclass

DEFAULT_WORST_POLL = 10.0
"""Worst poll assumed for a poller that does not say its own."""


@dataclass
class PollResult:
    samples: list[Sample]
    answered: bool
    """True when the device answered at all (even with some points invalid, or only with
    exception replies): its link works."""
    error: str | None = None
    """Why a read of this poll gave no data (None: every read gave data, or the device
    declared the points it refuses unreadable)."""
    requests: int = 0
    delivered: bool = True
    """Some read gave data. False with `answered`: the device answered every read with an
    exception (gateway.field.health: a failed poll)."""


class DevicePoller(Protocol):
    device_id: str
    interval: float

    async def poll(self) -> PollResult: ...


ProfileT = TypeVar("ProfileT", ModbusProfile, SerialTextProfile)
LinkT = TypeVar("LinkT")


class DevicePollerBase(Generic[ProfileT, LinkT]):
    """What every device poller holds: its device, interval (the device's own or the
    profile's default), profile, bus link, clock and the device's enabled points."""

    def __init__(self, device: Device, profile: ProfileT, link: LinkT, clock: Clock) -> None:
        self.device = device
        self.device_id = device.id
        self.interval = device.poll_interval or profile.default_poll_interval
        self.profile: ProfileT = profile
        self.link: LinkT = link
        self.clock = clock
        self.points: list[BoundPoint] = bind_points(device, profile)


class BusLink(Protocol):
    """The bus's connection (a Modbus client, a serial port)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


SampleSink = Callable[[list[Sample]], None]


def held_off(poller: DevicePoller) -> float:
    """Seconds before `poller` may use the bus again (its `hold_off()`, if it has one: a
    Modbus RTU unit whose late reply may still come, gateway.field.rtu_line); the bus loop
    polls the others meanwhile."""
    hold_off = getattr(poller, "hold_off", None)
    return float(hold_off()) if callable(hold_off) else 0.0


def worst_poll_seconds(poller: DevicePoller) -> float:
    """The longest one legitimate poll of `poller` takes, as the poller says it
    (`worst_poll_seconds` attribute: the Modbus and serial-text pollers do), else
    `DEFAULT_WORST_POLL`."""
    declared = getattr(poller, "worst_poll_seconds", None)
    return float(declared) if isinstance(declared, int | float) else DEFAULT_WORST_POLL
