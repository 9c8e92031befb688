"""The poller contract: what one poll of one device returns (`PollResult`), what a device
poller and a bus link provide (`DevicePoller`, `BusLink`), and the longest a legitimate poll
may take (`worst_poll_seconds`), which the bus loop's stall limit is built on.

The pollers (gateway.field.modbus_poller, gateway.field.serial_text) and the loop that runs them
(gateway.field.bus_loop) all import this module and not each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.field.sample import Sample

DEFAULT_WORST_POLL = 10.0
"""Worst poll assumed for a poller that does not say its own."""


@dataclass
class PollResult:
    samples: list[Sample]
    answered: bool
    """True when the device answered at all (even with some points invalid)."""
    error: str | None = None
    requests: int = 0


class DevicePoller(Protocol):
    device_id: str
    interval: float

    async def poll(self) -> PollResult: ...


class BusLink(Protocol):
    """The bus's connection (a Modbus client, a serial port)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


SampleSink = Callable[[list[Sample]], None]


def worst_poll_seconds(poller: DevicePoller) -> float:
    """The longest one legitimate poll of `poller` takes, as the poller says it
    (`worst_poll_seconds` attribute: the Modbus and serial-text pollers do), else
    `DEFAULT_WORST_POLL`."""
    declared = getattr(poller, "worst_poll_seconds", None)
    return float(declared) if isinstance(declared, int | float) else DEFAULT_WORST_POLL
