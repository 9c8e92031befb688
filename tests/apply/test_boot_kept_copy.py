"""`roomwarden run` as a real process, restarted after a bad edit of the installed file: it
boots the kept copy of the config it last booted and ran (README: a restart after a bad edit
"boots that copy"), whether the edit fails the config check or passes it and then cannot be
made into a gateway. An audit found the second kind crashing the start with a traceback (exit
1) — under systemd a crash loop with no alarms — for configs the check let through."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
from pathlib import Path
from typing import Any

from gateway.config.loader import load_gateway_config
from gateway.config.state_files import owner_of
from gateway.flashing.store import ConfigStore
from gateway.sim.site import SimulatedSite
from tests.apply.conftest import SITE, edit_config, for_tests, until
from tests.apply.test_service_process import GatewayProcess, devices_online, processes

__all__ = ["processes"]  # the fixture


async def test_a_restart_after_a_bad_edit_boots_the_kept_copy(
        tmp_path: Path, processes: list[GatewayProcess]) -> None:
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(), for_tests), encoding="utf-8")
        good = factory.read_text(encoding="utf-8")
        state, control = tmp_path / "state", tmp_path / "control.sock"
        store = ConfigStore(state / "config")
        gw = GatewayProcess(factory, state, control)
        processes.append(gw)

        def runs_kept_copy() -> bool:
            status = gw.status()
            return devices_online(status) and status is not None and (
                status["config_version"], status["config_sha256"]) == (0, good_sha)

        async def restart() -> None:
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(gw.proc.wait, 30) == 0
            gw.log.write_bytes(b"")
            gw.start()

        good_sha = await started_and_kept(gw, store)

        # an edit that passes the check, but the gateway cannot be made from it: the outbox
        # is to be a file where a directory is (what the check cannot know)
        def outbox_in_the_way(data: dict[str, Any]) -> None:
            data["uplink"] = {"broker": "127.0.0.1", "port": 1,
                              "outbox": {"path": str(tmp_path)}}

        factory.write_text(edit_config(good, outbox_in_the_way), encoding="utf-8")
        await restart()
        await until(runs_kept_copy, 40, "the kept copy booted after the outbox edit")
        log = gw.log.read_text()
        assert "event=installed_config_broken" in log and "OutboxError" in log, log[-3000:]
        assert gw.proc is not None and gw.proc.poll() is None

        # an edit the check refuses now (an empty band: it passed the check and crashed the
        # start before): the same
        def empty_band(data: dict[str, Any]) -> None:
            data.setdefault("rules", {}).setdefault("parameters", []).append(
                {"rule": "environment.temperature_recommended", "set": {"low": 50, "high": 10}})

        factory.write_text(edit_config(good, empty_band), encoding="utf-8")
        await restart()
        await until(runs_kept_copy, 40, "the kept copy booted after the band edit")
        log = gw.log.read_text()
        assert "event=installed_config_broken" in log and "low 50 is above high 10" in log, \
            log[-3000:]
        meta = store.active_meta()
        assert meta is not None and meta.sha256 == good_sha  # the bad edits were not kept


async def test_an_outbox_path_onto_a_file_not_an_outbox_boots_the_kept_copy(
        tmp_path: Path, processes: list[GatewayProcess]) -> None:
    """An audit pointed `uplink.outbox.path` at a writable file and at the config store's
    `state.json` (absolute: the check cannot know the state directory): the gateway renamed
    each aside as a damaged outbox and ran on an SQLite file in its place. Now building the
    uplink refuses them, the kept copy boots, and the files are as they were."""
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(), for_tests), encoding="utf-8")
        good = factory.read_text(encoding="utf-8")
        state, control = tmp_path / "state", tmp_path / "control.sock"
        store = ConfigStore(state / "config")
        victim = tmp_path / "victim.txt"
        victim.write_bytes(b"someone else's notes\n")
        victim.chmod(0o644)
        gw = GatewayProcess(factory, state, control)
        processes.append(gw)
        good_sha = await started_and_kept(gw, store)

        store_state = state / "config" / "state.json"
        for target, reason in [(victim, "exists and is not an outbox"),
                               (store_state, "is the config store (gateway.flashing.store) in "
                                             "the gateway's state directory")]:
            def outbox_on(data: dict[str, Any], target: Path = target) -> None:
                data["uplink"] = {"broker": "127.0.0.1", "port": 1,
                                  "outbox": {"path": str(target)}}

            factory.write_text(edit_config(good, outbox_on), encoding="utf-8")
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(gw.proc.wait, 30) == 0
            gw.log.write_bytes(b"")
            gw.start()

            def runs_kept_copy() -> bool:
                status = gw.status()
                return devices_online(status) and status is not None and (
                    status["config_version"], status["config_sha256"]) == (0, good_sha)

            await until(runs_kept_copy, 40, f"the kept copy booted (outbox on {target})")
            log = gw.log.read_text()
            assert "event=installed_config_broken" in log and reason in log, log[:6000]
            assert "event=outbox_corrupt" not in log, log[-3000:]
            assert list(target.parent.glob(target.name + ".corrupt-*")) == []
        assert victim.read_bytes() == b"someone else's notes\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
        json.loads(store_state.read_text(encoding="utf-8"))
        meta = store.active_meta()
        assert meta is not None and meta.sha256 == good_sha
        # every entry of the state directory the gateway made is one the outbox may not take
        # (gateway.config.state_files names them all)
        assert sorted(state.iterdir()) and all(
            owner_of(entry.name) is not None for entry in state.iterdir()), \
            sorted(p.name for p in state.iterdir())


async def started_and_kept(gw: GatewayProcess, store: ConfigStore) -> str:
    """Start `gw`, wait until its devices are online and the installed file's config is kept
    as the last-known-good; that config's SHA-256."""
    gw.start()
    await until(lambda: devices_online(gw.status()), 40, "the gateway up, devices online")
    status = gw.status()
    assert status is not None
    good_sha: str = status["config_sha256"]
    await until(lambda: (meta := store.active_meta()) is not None
                and meta.sha256 == good_sha, 30, "the installed file's config kept")
    return good_sha
