"""Applying configs to a running gateway through its control socket (`roomwarden config
apply`): applied and committed, rolled back on a failed health check, refused when invalid;
alarms in progress and their outputs carry over; a clean stop leaves outputs in their stop
state; SIGHUP reloads the installed file through the same path."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from gateway.control import MAX_CONNECTIONS
from gateway.field.bus_loop import BusLoop
from gateway.sim.signals import Constant
from tests.apply.conftest import (
    Running,
    ask,
    connected,
    device,
    edit_config,
    running_service,
    until,
)

SIREN, STROBE, FAN = "do-tx-01.do1", "do-tx-01.do2", "do-tx-01.do3"
FIRE = "fire.smoke_coincidence"


def states(answers: list[dict[str, Any]]) -> list[str]:
    return [a["progress"]["state"] for a in answers if "progress" in a]


def offset(data: dict[str, Any]) -> None:
    device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": -0.5}


async def test_a_good_config_is_applied_and_committed(running: Running) -> None:
    gw = running.service.gateway
    text = edit_config(running.text, offset)
    answers = await ask(running.control, {"op": "apply", "config": text, "author": "alice"})
    assert states(answers) == ["received", "staged", "applying", "applied"]
    final = answers[-1]
    assert final["ok"] is True and final["result"]["state"] == "applied"
    assert final["result"]["active_version"] == 1
    assert gw.config_version == 1
    health = gw.panel_state().health  # the panel shows the running version and hash
    assert health.config_version == 1 and health.config_sha256 == final["result"]["sha256"]
    th = next(d for d in gw.loaded.config.devices if d.id == "th-tx-a03")
    assert th.points["temperature"].offset == -0.5
    meta = running.service.store.active_meta()
    # the author given, and the user the kernel names at the socket's other end
    assert meta is not None and meta.version == 1 and meta.author == f"alice (as {_me()})"
    # the committed config is what a restart boots
    choice = running.service.store.boot(running.factory)
    assert choice.meta.version == 1 and not choice.recovered


async def test_applies_do_not_pile_up_the_replaced_bus_loops(running: Running) -> None:
    """The replaced config's bus loops (with their pollers, links and tasks: reference
    cycles) are collected when an apply ends, not whenever a full garbage collection comes —
    rarely, with the service's young threshold of 10,000 (the churn soak: RSS +10 MiB after 15
    applies at 200 points). The cyclic collector is off here, as it mostly is between full
    collections: after six applies the loops of at most three configs exist (the running one,
    and what the last apply's coroutines and the watchdog still held when it collected), not
    seven."""
    def generations() -> int:
        loops = [o for o in gc.get_objects() if isinstance(o, BusLoop)]
        return len(loops) // len(running.service.gateway.bus_loops)

    gc.collect()
    gc.disable()
    try:
        for n in range(6):
            text = edit_config(running.text, offset if n % 2 == 0 else (lambda _data: None))
            answers = await ask(running.control, {"op": "apply", "config": text,
                                                  "author": "alice"})
            assert states(answers)[-1] == "applied", answers[-1]
        assert generations() <= 3
    finally:
        gc.enable()


async def test_a_config_that_fails_its_health_check_rolls_back(running: Running) -> None:
    gw = running.service.gateway
    before = gw.loaded

    def wrong_unit(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03")["unit"] = 99  # nothing answers there

    text = edit_config(running.text, wrong_unit)
    answers = await ask(running.control, {"op": "apply", "config": text, "author": "bob"})
    assert states(answers)[-1] == "rolled_back"
    result = answers[-1]["result"]
    assert answers[-1]["ok"] is False
    assert result["code"] == "health_check_failed"
    assert "th-tx-a03" in result["error"]
    assert gw.config_version == 0 and gw.loaded.config == before.config
    assert running.service.store.active_meta() is None or \
        running.service.store.active_meta().version == 0  # type: ignore[union-attr]
    # the old config polls again: the device answers
    await until(running.all_online, 20, "every device online again after the rollback")
    # the next config gets a new number: the rolled-back one names that config alone (the
    # soak saw v2 rolled back and the next apply, another config, numbered v2 again)
    rolled = result["version"]
    answers = await ask(running.control, {"op": "apply", "config": edit_config(
        running.text, offset), "author": "bob"})
    assert states(answers)[-1] == "applied"
    assert answers[-1]["result"]["active_version"] == rolled + 1


async def test_an_invalid_config_is_refused_with_file_path_and_reason(running: Running) -> None:
    gw = running.service.gateway

    def bad(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03")["bus"] = "no-such-bus"

    text = edit_config(running.text, bad)
    answers = await ask(running.control, {"op": "apply", "config": text, "author": "carol"})
    assert states(answers) == ["received", "rejected"]
    result = answers[-1]["result"]
    assert result["code"] == "invalid_config"
    assert "devices[" in result["error"] and "no-such-bus" in result["error"]
    assert gw.config_version == 0 and gw.reconfigurations == 0


async def test_alarms_in_progress_and_their_outputs_carry_over(running: Running) -> None:
    gw = running.service.gateway
    site = running.site
    site.set_signal("smoke-tx-01.alarm", Constant(value=True))
    site.set_signal("smoke-tx-02.alarm", Constant(value=True))
    await until(lambda: site.read_point(SIREN) is True, 20, "the siren on")
    [fire] = [a for a in gw.core.alarms.active() if a.key.rule == FIRE]

    dropped: list[str] = []

    async def watch() -> None:  # the siren must never drop while the config changes
        while True:
            if site.read_point(SIREN) is not True:
                dropped.append("siren")
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        answers = await ask(running.control, {"op": "apply", "author": "dave",
                                              "config": edit_config(running.text, offset)})
        assert answers[-1]["result"]["state"] == "applied"
        rounds = gw.evaluations
        await until(lambda: gw.evaluations >= rounds + 2, 20,
                    "two evaluations under the new config (its first evaluates everything)")
    finally:
        watcher.cancel()
    assert dropped == []
    [after] = [a for a in gw.core.alarms.active() if a.key.rule == FIRE]
    assert after.activated_ns == fire.activated_ns and after.state == fire.state


async def test_a_clean_stop_leaves_outputs_in_their_stop_state(running: Running) -> None:
    site = running.site
    gw = running.service.gateway
    site.set_signal("smoke-tx-01.alarm", Constant(value=True))
    site.set_signal("smoke-tx-02.alarm", Constant(value=True))
    await until(lambda: site.read_point(SIREN) is True and site.read_point(STROBE) is True,
                20, "siren and strobe on")
    fan_before = site.read_point(FAN)
    running.service.stop()
    await until(lambda: gw._group is None, 20, "the gateway stopped")
    # sirens and strobes default to off at a planned stop; the fan holds its state
    assert site.read_point(SIREN) is False
    assert site.read_point(STROBE) is False
    assert site.read_point(FAN) == fan_before


async def test_sighup_reloads_the_installed_file_through_the_same_path(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    gw = running.service.gateway
    caplog.set_level(logging.INFO, logger="roomwarden.flashing")
    os.kill(os.getpid(), signal.SIGHUP)  # unchanged file: nothing to do
    await until(lambda: "event=reload_unchanged" in caplog.text, 10,
                "the SIGHUP handled (the file unchanged)")
    assert gw.config_version == 0 and gw.reconfigurations == 0
    running.factory.write_text(edit_config(running.text, offset), encoding="utf-8")
    os.kill(os.getpid(), signal.SIGHUP)
    store = running.service.store
    await until(lambda: (m := store.active_meta()) is not None and m.version == 1, 30,
                "the edited file applied and committed")
    assert gw.config_version == 1


async def test_sighup_of_a_file_that_is_no_config_is_logged_and_changes_nothing(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """The config audit: a named pipe in place of the installed file blocked the event loop
    for good at SIGHUP (no polls, no rules, no /healthz), and a refused edit left no log line
    at all. Now the file is read off the loop within its size limit, and what `systemctl
    reload` did is logged."""
    gw = running.service.gateway
    caplog.set_level(logging.INFO, logger="roomwarden.flashing")
    running.factory.write_text(running.text.replace("devices:", "devicez:", 1),
                               encoding="utf-8")
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: "event=reload_rejected" in caplog.text, 30, "the refusal logged")
    assert "devicez" in caplog.text and gw.config_version == 0
    running.factory.unlink()
    os.mkfifo(running.factory)
    def polls() -> int:
        return sum(loop.stats.cycles for loop in gw.bus_loops)

    before = polls()
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: "is a named pipe" in caplog.text, 10, "the pipe refused")
    await until(lambda: polls() > before + 2, 10, "polls go on")
    assert gw.config_version == 0 and gw.reconfigurations == 0


async def test_bad_control_requests_get_an_error_and_change_nothing(running: Running) -> None:
    gw = running.service.gateway
    for body in ({"op": "nope"}, {"op": "apply"}, {"op": "apply", "config": "x: [",
                                                    "author": "eve"},
                 {"op": "apply", "config": "gateway: 3", "author": ""}):
        answers = await ask(running.control, body)
        assert answers[-1]["ok"] is False, body
    raw = await asyncio.to_thread(_raw_exchange, running.control, b"not json\n")
    assert b'"ok": false' in raw
    assert gw.config_version == 0 and gw.reconfigurations == 0
    status = await ask(running.control, {"op": "status"})
    assert status[-1]["ok"] is True


async def test_the_control_socket_bounds_what_it_serves(running: Running) -> None:
    """The config audit: 150 clients each sending 3.9 MB without a newline took the gateway to
    1.2 GB; deeply nested JSON and a lone surrogate were an `internal error` with a traceback;
    a drill's actor with a newline forged log lines and named anyone in the journal."""
    idle = connected(running.control, MAX_CONNECTIONS)
    try:
        await asyncio.sleep(0.3)
        # the slot kept for status and drill stop serves a status, nothing else
        raw = await asyncio.to_thread(_raw_exchange, running.control, b'{"op": "status"}\n')
        assert raw.startswith(b'{"ok": true'), raw[:100]
        raw = await asyncio.to_thread(_raw_exchange, running.control, b'{"op": "reload"}\n')
        assert b"busy: 8 requests are being served" in raw
    finally:
        for sock in idle:
            sock.close()
    await asyncio.sleep(0.3)
    for payload, why in ((b"[" * 100_000 + b"\n", b"nested too deeply"),
                         (b'{"op": "apply", "author": "x", "config": "a: \\ud800"}\n',
                          b"surrogate")):
        raw = await asyncio.to_thread(_raw_exchange, running.control, payload)
        assert b'"ok": false' in raw and why in raw, raw
    answers = await ask(running.control, {"op": "apply", "author": "eve\n2026 level=INFO x",
                                          "config": running.text})
    assert "printable" in answers[-1]["error"]
    answers = await ask(running.control, {"op": "drill", "action": "status",
                                          "actor": "eve\nlevel=INFO"})
    assert "printable" in answers[-1]["error"]
    status = await ask(running.control, {"op": "status"})
    assert status[-1]["ok"] is True and running.service.gateway.config_version == 0


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _raw_exchange(path: os.PathLike[str], payload: bytes) -> bytes:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(os.fspath(path))
        with contextlib.suppress(BrokenPipeError):  # a busy answer may come before
            sock.sendall(payload)
        return sock.recv(65536)


async def test_a_gateway_that_takes_only_signed_configs_refuses_unsigned_local_ones(
        tmp_path: Path) -> None:
    from gateway.flashing.envelope import sign_config
    from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of

    private_path, _ = new_key_pair(tmp_path / "keys", "ops")
    key = load_private_key(private_path)

    def signed_only(data: dict[str, Any]) -> None:
        data["flashing"].update({"trusted_keys": [public_key_line(public_of(key), "ops")],
                                 "allow_local_unsigned": False})

    async with running_service(tmp_path, change=signed_only) as run:
        gw = run.service.gateway
        text = edit_config(run.text, offset)
        answers = await ask(run.control, {"op": "apply", "config": text, "author": "eve"})
        assert answers[-1]["result"]["state"] == "rejected"
        assert answers[-1]["result"]["code"] == "unsigned"
        assert gw.config_version == 0
        # `roomwarden config apply --key`: the same config, signed, goes through
        envelope = sign_config(text, gateway=gw.loaded.config.gateway.id, version=1,
                               author="alice", private_key=key)
        answers = await ask(run.control, {"op": "apply",
                                          "envelope": envelope.model_dump(mode="json")})
        assert states(answers)[-1] == "applied" and gw.config_version == 1


async def test_the_same_signed_config_sent_twice_at_once_is_applied_once(
        tmp_path: Path) -> None:
    from gateway.flashing.envelope import sign_config
    from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of

    private_path, _ = new_key_pair(tmp_path / "keys", "ops")
    key = load_private_key(private_path)

    def trusting(data: dict[str, Any]) -> None:
        data["flashing"]["trusted_keys"] = [public_key_line(public_of(key), "ops")]

    async with running_service(tmp_path, change=trusting) as run:
        gw = run.service.gateway
        envelope = sign_config(edit_config(run.text, offset),
                               gateway=gw.loaded.config.gateway.id, version=1,
                               author="alice", private_key=key).model_dump(mode="json")
        both = await asyncio.gather(ask(run.control, {"op": "apply", "envelope": envelope}),
                                    ask(run.control, {"op": "apply", "envelope": envelope}))
        finals = sorted(a[-1]["result"]["state"] for a in both)
        assert finals == ["applied", "rejected"]
        [refused] = [a[-1]["result"] for a in both if a[-1]["result"]["state"] == "rejected"]
        assert refused["code"] == "replayed"
        assert gw.config_version == 1 and gw.reconfigurations == 1


async def test_a_stop_requested_before_the_gateway_got_going_still_stops(
        tmp_path: Path) -> None:
    """A SIGTERM during start-up is not lost (systemd would otherwise wait, then SIGKILL)."""
    from gateway.config.loader import load_gateway_config
    from gateway.sim.site import SimulatedSite
    from gateway.supervisor import Service
    from tests.apply.conftest import SITE, for_tests

    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(), for_tests))
        service = Service(factory, state_dir=tmp_path / "state",
                          control_path=tmp_path / "control.sock")
        service.stop()
        await asyncio.wait_for(service.run(), 30)
        assert service.gateway._group is None
