"""Publish deadbands (the uplink's report by exception, `uplink.exception`) in what we ship:
the wear audit (W2) found the default of 0 made sensor noise into SD-card writes (10.2 GB a day
against 3.7 at 2,000 points). The shipped site with an uplink gives every measured quantity of
its points a deadband, and names no quantity it does not have (it had `humidity`, which no
point is: its humidity went up at every flicker); the README's values cover every measured
quantity of the shipped profiles, and the example uses them. And what the README says of them
holds in a running gateway: a deadband keeps samples from the uplink, never from the rules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.contract.codec import decode
from gateway.contract.telemetry import TelemetryBatch
from gateway.field.points import bind_points
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.supervisor import Service
from tests.fixtures.services import Broker, Subscriber, broker
from tests.shipped import FIRMWARE_CONFIGS, site, site_names

__all__ = ["broker"]

REPO = FIRMWARE_CONFIGS.parent
PROFILES = REPO / "hardware" / "profiles"
NOT_MEASURED = {"bool", "string", "bitstring"}
SETTINGS = {"alarm_setpoint", "debounce_time", "watchdog_timeout", "temperature_setpoint",
            "cycle_count", "operating_hours"}
"""Quantities with a unit that are settings or counters of whole units: each change is sent."""


def measured(loaded: LoadedConfig) -> set[str]:
    """The quantities of the config's points that are measurements: numeric, with a unit, not
    a state code (those have no unit) nor a setting."""
    out = set()
    for device in loaded.config.devices:
        for point in bind_points(device, loaded.profile_of(device)):
            kind = str(getattr(point.spec.type, "value", point.spec.type))
            if (point.quantity and point.unit and point.enum is None
                    and kind not in NOT_MEASURED and point.quantity not in SETTINGS):
                out.add(point.quantity)
    return out


def quantities(loaded: LoadedConfig) -> set[str]:
    return {p.quantity for d in loaded.config.devices
            for p in bind_points(d, loaded.profile_of(d)) if p.quantity}


def profile_quantities() -> tuple[set[str], set[str]]:
    """(every quantity of a shipped profile's points, the measured ones)."""
    every: set[str] = set()
    kept: set[str] = set()
    for path in sorted(PROFILES.glob("*.yaml")):
        profile = yaml.safe_load(path.read_text(encoding="utf-8"))
        for point in [*profile.get("points", []), *profile.get("fields", [])]:
            quantity = point.get("quantity")
            if quantity is None:
                continue
            every.add(quantity)
            every.update(b["quantity"] for b in point.get("bits", []) if "quantity" in b)
            if point.get("unit") and str(point.get("type")) not in NOT_MEASURED \
                    and quantity not in SETTINGS:
                kept.add(quantity)
    return every, kept


def readme_deadbands() -> dict[str, float]:
    """The README's suggested per-quantity deadbands (its YAML block that lists them)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        data = yaml.safe_load(block)
        if not isinstance(data, dict) or not isinstance(data.get("uplink"), dict):
            continue
        bands = data["uplink"].get("exception", {}).get("deadbands", {})
        if len(bands) > 10:
            return dict(bands)
    raise AssertionError("no block of suggested deadbands in the README")


UPLINKED = [name for name in site_names() if site(name).config.uplink is not None]


def test_a_shipped_site_with_an_uplink_is_there() -> None:
    assert UPLINKED == ["datacenter_lithium_room"]


@pytest.mark.parametrize("name", UPLINKED)
def test_a_shipped_site_names_only_its_own_quantities(name: str) -> None:
    loaded = site(name)
    assert loaded.config.uplink is not None
    named = set(loaded.config.uplink.exception.deadbands)
    assert named - quantities(loaded) == set()


@pytest.mark.parametrize("name", UPLINKED)
def test_a_shipped_site_gives_each_measured_quantity_the_readmes_deadband(name: str) -> None:
    loaded = site(name)
    assert loaded.config.uplink is not None
    exception = loaded.config.uplink.exception
    assert 0 < exception.deadband < 1  # state codes are integers: a change of one is sent
    suggested = readme_deadbands()
    assert {q: exception.deadbands.get(q) for q in measured(loaded)} == {
        q: suggested.get(q) for q in measured(loaded)}


def test_the_readme_suggests_a_deadband_for_every_measured_quantity() -> None:
    every, kept = profile_quantities()
    suggested = readme_deadbands()
    assert set(suggested) - every == set()  # no typo: each is some profile's quantity
    assert kept - set(suggested) == set()
    assert all(band > 0 for band in suggested.values())


H2 = "h2-1.h2"
ALARM = AlarmKey("explosion.h2_alarm", H2)
SMALL_SITE: dict[str, Any] = {
    "gateway": {"id": "gw-band", "site": "lab"},
    "rooms": [{"id": "batt", "type": "battery"}],
    "buses": [{"id": "rs485", "type": "modbus_rtu", "port": "/dev/ttyX", "baudrate": 38400,
               "timeout": "500ms"}],
    "devices": [{"id": "h2-1", "bus": "rs485", "unit": 1, "profile": "generic_h2_detector",
                 "room": "batt", "poll_interval": "500ms"}],
    "panel": {"enabled": False},
}


async def until(condition: Callable[[], object], seconds: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_a_deadband_keeps_samples_from_the_uplink_never_an_alarm(
        tmp_path: Path, broker: Broker) -> None:
    """A hydrogen deadband of 100 %LEL: the detector's 0 is sent, its 30 %LEL never (within the
    5-minute heartbeat) — and the 25 %LEL alarm is raised all the same, from the samples the
    uplink did not send; the flight recorder holds them too."""
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SMALL_SITE))
    subscriber = Subscriber(broker.port, "#")
    try:
        async with SimulatedSite(load_gateway_config(config)) as simulated:
            simulated.set_signal(H2, Constant(value=0.0))
            running = yaml.safe_load(simulated.write_config(tmp_path / "sim.yaml").read_text())
            running["uplink"] = {"broker": "127.0.0.1", "port": broker.port,
                                 "delivery": "puback",
                                 "exception": {"deadbands": {"h2_lel": 100.0}}}
            (tmp_path / "run.yaml").write_text(yaml.safe_dump(running))
            service = Service(tmp_path / "run.yaml", state_dir=tmp_path / "state",
                              control_path=tmp_path / "control.sock")
            gateway = service.gateway
            task = asyncio.create_task(service.run())
            try:
                await until(lambda: 0.0 in sent(subscriber))
                simulated.set_signal(H2, Constant(value=30.0))
                await until(lambda: ALARM in gateway.core.alarms.known() and
                            gateway.core.alarms.get(ALARM).state
                            is AlarmState.ACTIVE_UNACKNOWLEDGED)
                recorder = gateway.recording.recorder
                assert recorder is not None
                assert 30.0 in [s.value for s in recorder.samples(H2)]
                await asyncio.sleep(1.5)  # a commit interval and more: anything sent is here
                assert set(sent(subscriber)) == {0.0}
            finally:
                service.stop()
                await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)
    finally:
        subscriber.close()


def sent(subscriber: Subscriber) -> list[object]:
    """The values of the hydrogen point the uplink published."""
    values: list[object] = []
    for message in list(subscriber.messages):
        if not message.topic.endswith("/telemetry"):
            continue
        batch = decode(message.topic, message.payload)
        assert isinstance(batch, TelemetryBatch)
        values += [row[1] for row in batch.samples if row[0] == H2]
    return values
