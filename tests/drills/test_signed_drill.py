"""Signed evacuation drills (gateway.drills.signed): with `flashing.allow_local_unsigned: false`
a member of the roomwarden group could still sound an evacuation (sirens, charge inhibits) over
the control socket, unsigned. Now such a start must be signed by an operator key that `may`
`drill`, for this gateway, now, once; the journal names the key's owner. Exercised on the
control socket's request handling on a real (built, not started) Gateway of the telecom site,
and `roomwarden drill --live --key` as a process against a running gateway."""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.clock import Clock, ManualClock
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.drills.live_control import LiveDrills
from gateway.drills.signed import sign_start
from tests.fixtures.operators import Keys, keys
from tests.helpers import Locker

__all__ = ["keys"]  # fixture

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
GATEWAY, SITE_ID = "fsu-gz-tianhe-0301", "gz-tianhe-exchange"
DRILL = """\
drill: tx_fire_drill_signed
title: Fire drill in the equipment room (signed)
room: tx-3f
duration: 5m
steps:
  - at: 2s
    set: {smoke-tx-01.alarm: true, smoke-tx-02.alarm: true}
expect:
  - {alarm: fire.smoke_coincidence, subject: tx-3f, after: 2s, within: 8s}
forbid: ["*"]
allow: ["fire.smoke_detector@*"]
"""


def site_config(tmp: Path, keys: Keys, *, local_unsigned: bool) -> Path:
    data = yaml.safe_load(SITE.read_text())
    data["flashing"]["allow_local_unsigned"] = local_unsigned
    data["operators"] = {"keys": [
        {"key": keys.zhang.public.line(), "name": "Zhang Wei (NOC)",
         "may": ["acknowledge", "drill"]},
        {"key": keys.acker.public.line(), "may": ["acknowledge"]}]}
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Control:
    """`LiveDrills` on a real Gateway (built, never started), on an event loop of its own."""

    def __init__(self, config: Path, state_dir: Path, clock: Clock | None = None) -> None:
        self.loop = asyncio.new_event_loop()

        async def build() -> Gateway:
            return Gateway(load_gateway_config(config), state_dir=state_dir, clock=clock)

        self.gateway = self.loop.run_until_complete(build())
        self.drills = LiveDrills(self.gateway)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.loop.run_until_complete(self.drills.answer(request))

    def stop(self) -> None:
        self.answer({"op": "drill", "action": "stop", "actor": "lead", "peer": "root"})

    def close(self) -> None:
        self.gateway.core.close()
        self.loop.close()


@pytest.fixture
def strict(tmp_path: Path, keys: Keys) -> Iterator[Control]:
    c = Control(site_config(tmp_path, keys, local_unsigned=False), tmp_path / "state")
    yield c
    c.close()


def start(evacuation: bool, signed: dict[str, Any] | None = None,
          text: str = DRILL) -> dict[str, Any]:
    body: dict[str, Any] = {"op": "drill", "action": "start", "file": text,
                            "name": "fire.yaml", "evacuation": evacuation, "actor": "lead",
                            "peer": "tech"}
    if signed is not None:
        body["signed"] = signed
    return body


def test_an_unsigned_evacuation_is_refused_where_local_users_may_not_change_things(
        strict: Control, keys: Keys) -> None:
    answer = strict.answer(start(evacuation=True))
    assert answer["ok"] is False and "must be signed" in answer["error"]
    assert strict.gateway.core.drill is None  # nothing started
    silent = strict.answer(start(evacuation=False))  # outputs held: no signature needed
    assert silent["ok"] is True, silent
    strict.stop()


def test_a_signed_evacuation_runs_in_the_key_owners_name_once(strict: Control,
                                                               keys: Keys) -> None:
    signed = sign_start(DRILL, "fire.yaml", True, gateway=GATEWAY, site=SITE_ID,
                        private_key=keys.zhang.private)
    answer = strict.answer(start(True, signed))
    assert answer["ok"] is True, answer
    assert answer["drill"]["mode"] == "evacuation"
    assert answer["drill"]["actor"] == "Zhang Wei (NOC) as tech"  # not the claimed "lead"
    strict.stop()
    again = strict.answer(start(True, signed))  # the same signed start, replayed
    assert again["ok"] is False and "used before" in again["error"]


@pytest.mark.parametrize("case", ["no drill right", "stranger", "other gateway", "other site",
                                  "other file", "silent for evacuation", "expired",
                                  "bad signature", "missing field"])
def test_a_signed_start_that_is_not_good_is_refused(strict: Control, keys: Keys,
                                                    case: str) -> None:
    key, gateway, site, text, mode, now = keys.zhang, GATEWAY, SITE_ID, DRILL, True, None
    if case == "no drill right":
        key = keys.acker
    elif case == "stranger":
        key = keys.stranger
    elif case == "other gateway":
        gateway = "fsu-elsewhere"
    elif case == "other site":  # the same gateway id at another site (ids are per site)
        site = "sz-nanshan-exchange"
    elif case == "other file":
        text = DRILL.replace("duration: 5m", "duration: 9m")
    elif case == "silent for evacuation":
        mode = False
    elif case == "expired":
        now = 1_700_000_000_000_000_000
    signed = sign_start(text, "fire.yaml", mode, gateway=gateway, site=site,
                        private_key=key.private, now_ns=now)
    if case == "bad signature":
        raw = bytearray(base64.b64decode(signed["signature"]))
        raw[0] ^= 1
        signed["signature"] = base64.b64encode(bytes(raw)).decode()
    if case == "missing field":
        del signed["expires"]
    answer = strict.answer(start(True, signed))
    assert answer["ok"] is False and answer["error"].startswith("signed drill refused"), answer
    assert strict.gateway.core.drill is None


def test_a_start_signed_without_its_site_by_an_older_tool_is_refused(strict: Control,
                                                                       keys: Keys) -> None:
    """A start signed the old way, over the gateway id only (valid at every site with a
    gateway of that id), is refused — saying to update the signing tool — and starts
    nothing."""
    import time

    from gateway.drills.signed import file_digest, signing_bytes

    now = time.time_ns()
    fields: dict[str, Any] = {
        "action": "drill_start", "file_sha256": file_digest(DRILL), "name": "fire.yaml",
        "evacuation": True, "gateway": GATEWAY, "key_id": keys.zhang.public.key_id,
        "id": "drill-oldtool00000001", "ts": now, "expires": now + 60_000_000_000}
    fields["signature"] = base64.b64encode(
        keys.zhang.private.sign(signing_bytes(fields))).decode()
    answer = strict.answer(start(True, fields))
    assert answer["ok"] is False and "update the signing tool" in answer["error"], answer
    assert strict.gateway.core.drill is None


def test_where_local_users_are_trusted_an_unsigned_evacuation_runs(tmp_path: Path,
                                                                    keys: Keys) -> None:
    c = Control(site_config(tmp_path, keys, local_unsigned=True), tmp_path / "state")
    try:
        answer = c.answer(start(evacuation=True))
        assert answer["ok"] is True and answer["drill"]["actor"] == "lead as tech"
        c.stop()
    finally:
        c.close()


@pytest.mark.slow
@pytest.mark.process
def test_roomwarden_drill_live_key_signs_the_start(tmp_path: Path, keys: Keys) -> None:
    """The command as a technician runs it, against a gateway answering on its control socket
    (a real Gateway's LiveDrills behind a real ControlServer in this process's thread)."""
    import threading

    from gateway.control import ControlServer

    c = Control(site_config(tmp_path, keys, local_unsigned=False), tmp_path / "state")
    sock = tmp_path / "control.sock"
    server = ControlServer(sock, status=lambda: {"gateway": GATEWAY, "site": SITE_ID},
                           apply_text=None, apply_envelope=None,  # type: ignore[arg-type]
                           reload=None, drills=c.drills.answer)  # type: ignore[arg-type]
    c.loop.run_until_complete(server.start())
    thread = threading.Thread(target=c.loop.run_forever, daemon=True)
    thread.start()
    drill_file = tmp_path / "fire.yaml"
    drill_file.write_text(DRILL)

    def roomwarden(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "drill", "--live",
                               *map(str, args), "--socket", str(sock)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    try:
        refused = roomwarden(drill_file, "--evacuation", "--no-wait")
        assert refused.returncode == 1 and "must be signed" in refused.stderr
        started = roomwarden(drill_file, "--evacuation", "--no-wait", "--key",
                             keys.zhang.private_path)
        assert started.returncode == 0, started.stderr
        assert "Zhang Wei (NOC) as" in started.stdout
        stopped = roomwarden("--stop")
        assert stopped.returncode in (0, 1), stopped.stderr
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), c.loop).result(10)
        c.loop.call_soon_threadsafe(c.loop.stop)
        thread.join(10)
        c.close()


def test_a_signed_start_waits_for_a_locked_replay_memory_off_the_event_loop(
        strict: Control, keys: Keys) -> None:
    """The start's id is written to the replay memory in a thread: while another process holds
    the file locked, the event loop (the rules, the buses) goes on; the start goes through once
    the lock is let go. Before, the write held the loop up to the file's 5 s busy timeout and
    the start was refused."""
    signed = sign_start(DRILL, "fire.yaml", True, gateway=GATEWAY, site=SITE_ID,
                        private_key=keys.zhang.private)
    strict.gateway.replay_memory()  # the file, as a gateway that took a command before has it
    lock = Locker(strict.gateway.state_dir / "operator" / "commands.sqlite", "EXCLUSIVE")

    async def start_while_locked() -> dict[str, Any]:
        task = asyncio.ensure_future(strict.drills.answer(start(True, signed)))
        for _ in range(20):  # the loop turns while the start waits for the disk
            await asyncio.sleep(0.02)
            assert not task.done(), task.result()
        lock.release()
        return await task

    answer = strict.loop.run_until_complete(start_while_locked())
    assert answer["ok"] is True, answer
    assert answer["drill"]["actor"] == "Zhang Wei (NOC) as tech"
    strict.stop()


def test_a_signed_start_that_expires_while_its_id_waits_for_the_disk_is_not_started(
        tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    """Valid when checked, past its expiry once the locked replay memory let its id be written:
    no drill starts (before, the evacuation ran all the same), the answer says it expired
    while it waited, and its id stays used."""
    caplog.set_level(logging.WARNING, logger="roomwarden.drill")
    clock = ManualClock(start_ns=1_800_000_000_000_000_000)
    c = Control(site_config(tmp_path, keys, local_unsigned=False), tmp_path / "state", clock)
    try:
        c.gateway.replay_memory()
        clock.advance(1.0)
        signed = sign_start(DRILL, "fire.yaml", True, gateway=GATEWAY, site=SITE_ID,
                            private_key=keys.zhang.private, now_ns=clock.now_ns(),
                            lifetime_s=30.0)
        lock = Locker(c.gateway.state_dir / "operator" / "commands.sqlite", "EXCLUSIVE")

        memory = c.gateway.replay_memory()

        def writing() -> bool:
            """The start was checked and its id's write holds the memory (waits for the
            lock): the memory's own lock is taken."""
            if not memory._lock.acquire(blocking=False):
                return True
            memory._lock.release()
            return False

        async def start_while_locked() -> dict[str, Any]:
            task = asyncio.ensure_future(c.drills.answer(start(True, signed)))
            while not writing():
                assert not task.done(), task.result()
                await asyncio.sleep(0.01)
            clock.advance(31.0)
            lock.release()
            return await task

        answer = c.loop.run_until_complete(start_while_locked())
        assert answer["ok"] is False, answer
        assert answer["error"].startswith("signed drill refused: the signature expired 1.0 s "
                                          "ago, while the start waited"), answer
        assert c.gateway.core.drill is None and c.drills.session is None
        assert "expired_waiting=True" in caplog.text
        clock.step_wall(-31.0)  # valid again by its time: refused as the replay it is
        again = c.answer(start(True, signed))
        assert again["ok"] is False and "used before" in again["error"], again
    finally:
        c.close()
