"""A whole site simulated: every bus and device of a gateway config, on loopback and ptys.

    async with SimulatedSite(loaded) as site:
        site.write_config(tmp / "gateway.yaml")   # the same config, pointed at the simulator
        site.set_signal("ups1.status.utility_fail", Constant(value=True))
        site.set_fault("pdu1", Fault(mode=FaultMode.NO_REPLY))

Modbus TCP buses get a server on a free 127.0.0.1 port; Modbus RTU and serial-text buses get
an emulated line whose client end replaces the bus's `port`. Every point starts with a
healthy-room default signal (`gateway.sim.normal.point_default`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from gateway.clock import Clock
from gateway.config.loader import LoadedConfig, default_profiles_dir
from gateway.config.profile import SerialTextProfile
from gateway.sim.control import ControlServer
from gateway.sim.faults import Fault, FaultTable
from gateway.sim.feedback import wire_feedback
from gateway.sim.modbus_sim import LogEntry, ModbusSim
from gateway.sim.serial_sim import SerialTextBusSim, TextDevice
from gateway.sim.signals import Constant, Signal, SignalTable, Value


class SimulatedSite:
    """Starts (as an async context manager) every simulated bus of `loaded`."""

    def __init__(self, loaded: LoadedConfig, *, clock: Clock | None = None, seed: int = 0,
                 paced: bool = True) -> None:
        self.loaded = loaded
        self.signals = SignalTable(clock)
        self.faults = FaultTable(seed=seed)
        self.modbus = ModbusSim(loaded, self.signals, self.faults, paced=paced, seed=seed)
        self.text: dict[str, SerialTextBusSim] = {}
        self._text_devices: dict[str, TextDevice] = {}
        self._control: ControlServer | None = None
        self._started = False
        buses = {bus.id: bus for bus in loaded.config.buses}
        for device in loaded.config.devices:
            profile = loaded.profiles.get(device.profile)
            bus = buses.get(device.bus)
            if not device.enabled or not isinstance(profile, SerialTextProfile) \
                    or bus is None or bus.type != "serial_text" or bus.id in self.text:
                continue
            text_device = TextDevice(device, profile, self.signals, seed)
            self._text_devices[device.id] = text_device
            self.text[bus.id] = SerialTextBusSim(bus, text_device, self.faults, paced=paced)
        wire_feedback(self.signals, loaded)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.modbus.start()
            for bus in self.text.values():
                await bus.start()
        except BaseException:
            await self.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        if self._control is not None:
            await self._control.stop()
            self._control = None
        for bus in self.text.values():
            await bus.stop()
        await self.modbus.stop()
        self._started = False

    async def __aenter__(self) -> SimulatedSite:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def serve_control(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Open the JSON-lines control channel (see `gateway.sim.control`); returns its port."""
        if self._control is None:
            self._control = ControlServer(self, host=host, port=port)
            await self._control.start()
        return self._control.port

    # --- where things are -------------------------------------------------------------------

    def endpoint(self, bus_id: str) -> str:
        """`127.0.0.1:port` for a TCP bus, the client pty path for a serial one."""
        if bus_id in self.modbus.buses:
            return self.modbus.buses[bus_id].endpoint
        if bus_id in self.text:
            return self.text[bus_id].endpoint
        raise KeyError(f"no simulated bus {bus_id!r}")

    def profiles_dir(self) -> Path:
        config = self.loaded.config
        if config.profiles_dir:
            return (self.loaded.path.parent / config.profiles_dir).resolve()
        return default_profiles_dir().resolve()

    def rewritten_config(self) -> dict[str, Any]:
        """The gateway config's YAML data with every bus pointed at the simulator and
        `profiles_dir` absolute, so the written file loads from anywhere."""
        if not self._started:
            raise RuntimeError("start the site before asking for its config")
        with self.loaded.path.open(encoding="utf-8") as handle:
            data: dict[str, Any] = copy.deepcopy(yaml.safe_load(handle))
        data["profiles_dir"] = str(self.profiles_dir())
        for bus in data.get("buses", []):
            bus_id = bus.get("id")
            if bus_id in self.modbus.buses and bus.get("type") == "modbus_tcp":
                sim = self.modbus.buses[bus_id]
                bus["host"], bus["port"] = sim.host, sim.port
            elif bus_id in self.modbus.buses or bus_id in self.text:
                bus["port"] = self.endpoint(bus_id)
                if bus.get("parity", "N") != "N":
                    # a pty refuses parity settings; the simulated line is paced for the
                    # configured frame (parity bit included) all the same
                    bus["inter_frame_delay"] = bus.get("inter_frame_delay") or \
                        _frame_gap(bus)
                    bus["parity"] = "N"
        return data

    def write_config(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.rewritten_config(), sort_keys=False),
                        encoding="utf-8")
        return path

    # --- control ----------------------------------------------------------------------------

    def points(self) -> list[str]:
        return self.signals.points()

    def devices(self) -> list[str]:
        return self.faults.devices()

    def set_signal(self, point_id: str, signal: Signal) -> None:
        self.signals.set(point_id, signal)

    def hold(self, point_id: str) -> Value:
        return self.signals.hold(point_id)

    def release(self, point_id: str) -> None:
        self.signals.release(point_id)

    def set_fault(self, device_id: str, fault: Fault) -> None:
        self.faults.set(device_id, fault)

    def fault(self, device_id: str) -> Fault:
        return self.faults.get(device_id)

    def stick(self, point_id: str, state: bool | None) -> None:
        """A relay that no longer follows its writes: the coil stays at `state` whatever the
        gateway writes (writes are still taken and logged); None mends it."""
        image, address = self.modbus.coil(point_id)
        if state is None:
            image.stuck.pop(address, None)
        else:
            image.stuck[address] = state
            self.signals.set(point_id, Constant(value=state))

    def log(self, device_id: str | None = None) -> list[LogEntry]:
        """The coil and input log of one simulated Modbus device, or of all, in time order."""
        images = [self.modbus.images[device_id]] if device_id else self.modbus.images.values()
        return sorted((e for image in images for e in image.log), key=lambda e: e.t)

    def value(self, point_id: str) -> Value:
        """The signal's present value (what the device is set to report)."""
        return self.signals.value(point_id)

    def read_point(self, point_id: str) -> Value:
        """What a client would decode now, from the device's own image: for Modbus points this
        includes the gateway's writes (a coil it switched on)."""
        device_id = point_id.split(".", 1)[0]
        if device_id in self.modbus.images:
            return self.modbus.read_point(point_id)
        text = self._text_devices.get(device_id)
        if text is not None:
            return text.read_point(point_id)
        raise KeyError(f"no simulated point {point_id!r}")


def _frame_gap(bus: dict[str, Any]) -> str:
    """3.5 characters of the configured frame (with its parity bit), as a duration."""
    baud = int(bus.get("baudrate", 9600))
    bits = 1 + int(bus.get("bytesize", 8)) + 1 + int(bus.get("stopbits", 1))
    seconds = 0.00175 if baud > 19200 else 3.5 * bits / baud
    return f"{seconds * 1000:.3f}ms"
