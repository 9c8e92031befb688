"""SimulatedSite: the rewritten config loads from anywhere and points at the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.site import ModbusRtuBus, ModbusTcpBus, SerialTextBus
from gateway.sim.site import SimulatedSite


async def test_rewritten_config_loads_and_points_at_the_sim(
        site: SimulatedSite, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = site.write_config(elsewhere / "gateway.yaml")
    reloaded = load_gateway_config(path)
    assert Path(reloaded.config.profiles_dir or "").is_absolute()
    buses = {b.id: b for b in reloaded.config.buses}
    tcp, rtu, ups = buses["tcp1"], buses["rtu1"], buses["ups"]
    assert isinstance(tcp, ModbusTcpBus) and isinstance(rtu, ModbusRtuBus)
    assert isinstance(ups, SerialTextBus)
    assert (tcp.host, str(tcp.port)) == tuple(site.endpoint("tcp1").rsplit(":", 1))
    assert rtu.port == site.endpoint("rtu1") and rtu.port.startswith("/dev/")
    assert ups.port == site.endpoint("ups")
    assert reloaded.config.devices == site.loaded.config.devices


async def test_unknown_ids_are_refused(site: SimulatedSite) -> None:
    from gateway.sim.faults import Fault
    from gateway.sim.signals import Constant
    with pytest.raises(KeyError):
        site.set_signal("ghost.value", Constant(value=1))
    with pytest.raises(KeyError):
        site.set_fault("ghost", Fault())
    with pytest.raises(KeyError):
        site.read_point("ghost.value")


async def test_defaults_are_healthy(site: SimulatedSite) -> None:
    assert 22 <= float(site.read_point("meter.temperature")) <= 24
    assert site.read_point("meter.smoke") is False
    assert site.read_point("ups1.status.utility_fail") is False
    assert 220 <= float(site.read_point("ups1.input_voltage")) <= 230


async def test_config_before_start_is_an_error(loaded: LoadedConfig) -> None:
    with pytest.raises(RuntimeError):
        SimulatedSite(loaded).rewritten_config()
