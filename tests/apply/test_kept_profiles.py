"""A last-known-good config keeps the profiles it was checked with and ran on: a site profile
file broken afterwards (a technician's edit with a typo) or removed no longer stops the gateway
starting after a restart or a power cut — it boots the last-known-good on the kept profiles,
says so, and uses the files on disk again once they check. Before, the boot failed on both the
last-known-good and the installed file and the service exited 1 at every start (no polling, no
alarms, outputs off)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_gateway_config
from gateway.flashing.store import ConfigStore
from gateway.ops.health import monitor_for
from gateway.sim.site import SimulatedSite
from gateway.supervisor import Service
from tests.apply.conftest import SITE, ask, booted, edit_config, for_tests, until

SHIPPED = Path(__file__).resolve().parents[2] / "hardware" / "profiles"


def kept_dir(state: Path) -> Path | None:
    active = ConfigStore(state / "config").root / "active"
    profiles = active.resolve() / "profiles" if active.exists() else None
    return profiles if profiles is not None and profiles.is_dir() else None


def online(service: Service) -> bool:
    return all(h.online for loop in service.gateway.bus_loops
               for h in loop.stats.device_health.values())


async def test_a_broken_site_profile_does_not_stop_the_next_boot(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site_profiles = tmp_path / "profiles"
    site_profiles.mkdir()

    def prepare(data: dict[str, Any]) -> None:
        for_tests(data)
        data["profiles_dir"] = "profiles"
        for device in data["devices"]:  # this site's own copies of the profiles it uses
            name = f"{device['profile']}.yaml"
            (site_profiles / name).write_text((SHIPPED / name).read_text())

    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(), prepare))
        profile = yaml.safe_load(factory.read_text())["devices"][0]["profile"]
        async with booted(tmp_path, factory) as service:
            await until(lambda: kept_dir(tmp_path / "state") is not None, 30, "profiles kept")
        kept = kept_dir(tmp_path / "state")
        assert kept is not None and (kept / f"{profile}.yaml").read_text() == \
            (SHIPPED / f"{profile}.yaml").read_text()

        broken = site_profiles / f"{profile}.yaml"
        good = broken.read_text()
        broken.write_text(good.replace("id:", "id: [", 1))  # the typo
        caplog.set_level(logging.ERROR)
        async with booted(tmp_path, factory) as service:
            assert service.gateway.loaded.profile_texts[profile] == good
            assert "event=lkg_booted_with_kept_profiles" in caplog.text
            assert str(broken) in caplog.text
            await until(lambda: online(service), 30, "every device online on kept profiles")
            # /healthz says so too (it was only logged): degraded, naming the kept profiles
            check = monitor_for(service.gateway).check().checks["config"]
            assert check.status == "degraded", check
            assert "kept with it" in check.detail and str(broken) in check.detail

        broken.write_text(good.replace("\n", "\n# mended\n", 1))  # the files are used again
        caplog.clear()
        async with booted(tmp_path, factory) as service:
            assert "event=lkg_booted_with_kept_profiles" not in caplog.text
            assert service.gateway.loaded.profile_texts[profile] == broken.read_text()
            await until(lambda: online(service), 30, "every device online")
            assert monitor_for(service.gateway).check().checks["config"].status == "ok"

        broken.write_text(good.replace("id:", "id: [", 1))  # broken again: kept profiles
        async with booted(tmp_path, factory, "control2") as service:
            gw = service.gateway
            assert monitor_for(gw).check().checks["config"].status == "degraded"
            broken.write_text(good)  # mended, and a config applied: the boot's problem is over
            text = edit_config(factory.read_text(), lambda data: data["gateway"].update(
                name="after the mend"))
            answers = await ask(tmp_path / "control2.sock",
                                {"op": "apply", "config": text, "author": "tech"})
            assert answers[-1]["ok"] is True, answers[-1]
            check = monitor_for(gw).check().checks["config"]
            assert check.status == "ok" and check.detail.startswith(
                f"version {gw.config_version} "), check
