"""`uplink.outbox.path` stays off everything that is not the outbox's own.

An audit pointed it at an existing writable file (`/tmp/…/victim.txt`): the check said ok, and
the gateway renamed the file aside as a damaged outbox (`event=outbox_corrupt`) and put a fresh
SQLite outbox in its place; at `config/state.json` it did so to the config store's state (a
local apply then failed its commit, and the next start had to recover the store). Now the
check refuses a path onto the gateway's own state, the gateway refuses one that gets there by
an absolute path or a symlink, and the outbox never moves or writes a file that is not one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.clock import ManualClock, SystemClock
from gateway.config.state_files import owner_of
from gateway.uplink.outbox import Outbox, OutboxError
from gateway.uplink.publisher import Uplink
from tests.uplink.test_outbox_damage import aside
from tests.uplink.test_publisher import GW, POINTS, SITE, settings

STATE_JSON = b'{"active": "v0001", "previous": null}\n'


@pytest.mark.parametrize("name, content", [("victim.txt", b"someone else's notes\n"),
                                           ("state.json", STATE_JSON)])
def test_a_file_that_is_not_an_outbox_is_refused_and_left_as_it_was(
        tmp_path: Path, name: str, content: bytes) -> None:
    victim = tmp_path / name
    victim.write_bytes(content)
    victim.chmod(0o644)
    with pytest.raises(OutboxError) as refused:  # before: moved aside, an outbox in its place
        Outbox(victim, clock=ManualClock())
    assert str(victim) in str(refused.value)
    assert "exists and is not an outbox" in str(refused.value)
    assert "refusing to move or overwrite it" in str(refused.value)
    assert victim.read_bytes() == content
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert aside(victim) == [] and sorted(p.name for p in tmp_path.iterdir()) == [name]


REFUSED = {
    "config/state.json": "the config store",
    "uplink/../config/state.json": "the config store",
    "./config": "the config store",
    "alarms.sqlite": "the alarm journal",
    "alarms.sqlite-wal": "the alarm journal",
    "operator/commands.sqlite": "the replay memory",
    "operator": "the directory of the replay memory",
    "incidents/outbox.sqlite": "the flight recorder's incident store",
    "rate_windows.bin": "warm-start file",
    "gateway.lock": "the state directory's lock",
    "control.sock": "control socket",
    ".": "the state directory itself",
}
ALLOWED = ["uplink/outbox.sqlite", "outbox.sqlite", "configs/outbox.sqlite",
           "alarms.sqlite.outbox", "operator/outbox.sqlite", "../elsewhere/outbox.sqlite",
           "/var/spool/roomwarden/outbox.sqlite"]


@pytest.mark.parametrize("path", REFUSED)
def test_the_check_refuses_an_outbox_path_on_the_gateways_own_state(path: str) -> None:
    """(Through `roomwarden check`: tests/config/test_check_boot_failures.py.) What the check
    cannot judge (an absolute path, one leaving the state directory: the gateway does) and
    paths beside the gateway's own files pass."""
    with pytest.raises(ValidationError) as refused:  # before: accepted
        settings(1, outbox={"path": path})
    [error] = refused.value.errors()
    assert error["loc"] == ("outbox", "path")
    assert REFUSED[path] in error["msg"] and "in the gateway's state directory" in error["msg"]
    for allowed in ALLOWED:
        assert settings(1, outbox={"path": allowed}).outbox.path == allowed
        assert owner_of(allowed) is None


def test_the_gateway_refuses_an_absolute_path_onto_its_own_state(tmp_path: Path) -> None:
    """The config store's state named by an absolute path, and the alarm journal through a
    symlink to the state directory: the check passes them, building the uplink does not."""
    state = tmp_path / "state"
    (state / "config").mkdir(parents=True)
    store_state = state / "config" / "state.json"
    store_state.write_bytes(STATE_JSON)
    (tmp_path / "link").symlink_to(state)
    for path, owner in [(store_state, "the config store"),
                        (tmp_path / "link" / "alarms.sqlite", "the alarm journal")]:
        with pytest.raises(OutboxError) as refused:
            Uplink(settings(1, outbox={"path": str(path)}), SITE, GW, state, SystemClock(),
                   POINTS)
        assert str(path) in str(refused.value) and owner in str(refused.value)
        assert str(state) in str(refused.value)
    assert store_state.read_bytes() == STATE_JSON
    assert sorted(os.listdir(state / "config")) == ["state.json"]
    assert not (state / "alarms.sqlite").exists()
