"""A flash must leave the gateway reachable, and its refusals must reach the flasher (from the
apply audit, real gateway and Mosquitto): a flash whose uplink could not connect was judged
healthy (buses and rules only), committed, and locked out every later flash, the fix
included; a flash that met a full state directory got no answer at all; a config whose panel
could not listen was committed (no panel, /healthz or /metrics)."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

import gateway.flashing.store
import gateway.storage
from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of
from gateway.localservices import free_port
from tests.apply.conftest import Running, ask, device, edit_config, running_service, until
from tests.apply.test_flash_mqtt import Publisher, statuses, topics
from tests.fixtures.services import Broker, Subscriber, broker

__all__ = ["broker"]


def offset(value: float) -> Any:
    def change(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": value}
    return change


class Flasher:
    """Signed envelopes to `config/set`, and the gateway's final answer to each."""

    def __init__(self, run: Running, port: int, key_path: Path) -> None:
        self.run = run
        self.key = load_private_key(key_path)
        self.set_topic, self.status_topic, _state = topics(run)
        self.sub = Subscriber(port, [self.status_topic])
        self.pub = Publisher(port)

    async def flash(self, text: str, version: int, seconds: float = 30) -> dict[str, Any]:
        gw = self.run.service.gateway
        env = sign_config(text, gateway=gw.loaded.config.gateway.id, version=version,
                          author="ops", private_key=self.key).model_dump(mode="json")
        self.pub.send(self.set_topic, json.dumps(env).encode())

        def final() -> dict[str, Any] | None:
            return next((s for s in statuses(self.sub, self.status_topic)
                         if s.get("id") == env["id"]
                         and s["state"] in ("applied", "rejected", "rolled_back")), None)
        await until(lambda: final() is not None, seconds, f"the outcome of v{version}")
        answer = final()
        assert answer is not None
        return answer

    def close(self) -> None:
        self.pub.close()
        self.sub.close()


def flashable(tmp_path: Path, broker: Broker) -> tuple[Path, Any]:
    private_path, _ = new_key_pair(tmp_path / "keys", "ops")
    trusted = public_key_line(public_of(load_private_key(private_path)), "ops")

    def change(data: dict[str, Any]) -> None:
        data["uplink"] = {"broker": "127.0.0.1", "port": broker.port}
        data["flashing"]["trusted_keys"] = [trusted]
    return private_path, change


async def test_a_flash_whose_uplink_cannot_connect_is_rolled_back(
        tmp_path: Path, broker: Broker) -> None:
    """The audit's `d_flash_uplink_cut`: a port typo in `uplink:` was committed and the
    gateway never heard a flash again. Now the uplink must connect within the health timeout,
    so the rollback's answer and the next flash get through."""
    key, change = flashable(tmp_path, broker)
    # (15 s: at 3 s, then at 5 s (6 Dec), a 9600-baud simulated device that lost one reply
    # under a full test run's load had not answered again by the deadline, and an apply of a
    # good config was rolled back; the checks here do not depend on the timeout)
    async with running_service(tmp_path, health_timeout="15s", change=change) as run:
        gw = run.service.gateway
        await until(lambda: gw.uplink is not None and gw.uplink.status().connected, 15,
                    "uplink connected")
        flasher = Flasher(run, broker.port, key)
        try:
            cut = edit_config(run.text, lambda d: d["uplink"].update(port=free_port()))
            answer = await flasher.flash(cut, 1)
            assert answer["state"] == "rolled_back", answer
            assert answer["code"] == "health_check_failed"
            assert "the uplink did not connect to the broker" in answer["error"]
            assert gw.config_version == 0 and run.service.store.highest_version() == 1
            await until(lambda: gw.uplink is not None and gw.uplink.status().connected, 15,
                        "the uplink back")
            # the fix reaches the gateway and is applied (the uplink unchanged: at once)
            answer = await flasher.flash(edit_config(run.text, offset(0.4)), 2)
            assert answer["state"] == "applied", answer
            assert gw.config_version == 2
        finally:
            flasher.close()
        # a local apply is not held to it: the technician is at the gateway
        local = edit_config(run.text, lambda d: d["uplink"].update(port=free_port()))
        answers = await ask(run.control, {"op": "apply", "config": local, "author": "tech"})
        assert answers[-1]["result"]["state"] == "applied", answers[-1]["result"].get("error")


async def test_a_flash_that_meets_a_full_state_directory_is_answered(
        tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's `d_disk_full`: the flasher got no config/status at all (an unobserved
    task's OSError). Now a refusal with a code; the config runs on; and once there is space
    the same version can be flashed (it was not burned by the failed write)."""
    key, change = flashable(tmp_path, broker)
    async with running_service(tmp_path, change=change) as run:
        gw = run.service.gateway
        await until(lambda: gw.uplink is not None and gw.uplink.status().connected, 15,
                    "uplink connected")
        real = gateway.storage.atomic_write  # what gateway.flashing.store calls
        full = True

        def write(path: Path, data: Any, *args: Any, **kwargs: Any) -> None:
            if full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real(path, data, *args, **kwargs)

        monkeypatch.setattr(gateway.flashing.store, "atomic_write", write)
        flasher = Flasher(run, broker.port, key)
        try:
            text = edit_config(run.text, offset(0.4))
            answer = await flasher.flash(text, 1)
            assert answer["state"] == "rejected" and answer["code"] == "storage_error"
            assert answer["error"].startswith("state directory full: ")
            assert gw.config_version == 0 and gw.reconfigurations == 0
            full = False
            answer = await flasher.flash(text + "# again\n", 1)
            assert answer["state"] == "applied", answer
        finally:
            flasher.close()


async def test_a_config_whose_panel_cannot_listen_is_rolled_back(tmp_path: Path) -> None:
    """The audit's `d_panel_port`: a port in use, or a bind address the machine does not
    have, was committed; the panel, /healthz and /metrics were gone for good. (Both fail the
    same way, at the panel's bind; tests use no address outside 127.0.0.0/8, every one of
    which this machine has, so the port in use stands for both.)"""
    async with running_service(tmp_path, health_timeout="2s") as run:
        gw = run.service.gateway
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            in_use = taken.getsockname()[1]
            for panel in ({"enabled": True, "bind": "127.0.0.1", "port": in_use},):
                def with_panel(data: dict[str, Any], panel: dict[str, Any] = panel) -> None:
                    data.update(panel=panel)

                text = edit_config(run.text, with_panel)
                answers = await ask(run.control, {"op": "apply", "config": text,
                                                  "author": "tech"})
                result = answers[-1]["result"]
                assert result["state"] == "rolled_back", result
                assert f"the panel could not listen on {panel['bind']}:{panel['port']}" \
                    in result["error"]
                assert gw.config_version == 0 and gw.panel is None
        # a panel that can listen is applied
        port = free_port()
        text = edit_config(run.text, lambda d: d.update(
            panel={"enabled": True, "bind": "127.0.0.1", "port": port}))
        answers = await ask(run.control, {"op": "apply", "config": text, "author": "tech"})
        assert answers[-1]["result"]["state"] == "applied"
        assert gw.panel_ready.is_set() and gw.panel_port == port
