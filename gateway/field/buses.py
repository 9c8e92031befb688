"""Build the bus loops of a gateway config: one loop per bus, one poller per device."""

from __future__ import annotations

from gateway.clock import Clock
from gateway.config.loaded import LoadedConfig
from gateway.config.profile import ModbusProfile, SerialTextProfile
from gateway.config.site import ModbusRtuBus, ModbusTcpBus, SerialTextBus
from gateway.field.bus_loop import BusLoop
from gateway.field.modbus_link import ModbusLink
from gateway.field.modbus_poller import ModbusDevicePoller
from gateway.field.poll import BusLink, DevicePoller, SampleSink
from gateway.field.serial_text import SerialTextLink, SerialTextPoller


def build_bus_loops(loaded: LoadedConfig, sink: SampleSink, clock: Clock) -> list[BusLoop]:
    loops = []
    for bus in loaded.config.buses:
        devices = [d for d in loaded.config.devices if d.bus == bus.id and d.enabled]
        if not devices:
            continue
        link: BusLink
        pollers: list[DevicePoller] = []
        if isinstance(bus, ModbusRtuBus | ModbusTcpBus):
            modbus_link = ModbusLink(bus)
            link = modbus_link
            for device in devices:
                profile = loaded.profile_of(device)
                assert isinstance(profile, ModbusProfile)
                pollers.append(ModbusDevicePoller(device, profile, modbus_link, clock,
                                                  max_gap=bus.max_gap))
        else:
            assert isinstance(bus, SerialTextBus)
            text_link = SerialTextLink(bus)
            link = text_link
            for device in devices:
                profile = loaded.profile_of(device)
                assert isinstance(profile, SerialTextProfile)
                pollers.append(SerialTextPoller(device, profile, text_link, clock))
        loops.append(BusLoop(bus.id, link, pollers, sink, bus.failure, clock))
    return loops
