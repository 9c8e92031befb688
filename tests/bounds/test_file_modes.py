"""Under `umask 000`, nothing RoomWarden writes that holds configs (with password hashes), keys,
the alarm journal, the outbox, the ingest's stores or its dead letters is readable by others:
a real gateway service with an uplink takes a signed config, a key pair is made, the ingest's
stores are opened — then every file is 0600 and every directory 0700 (the control socket is
the one group-shared file: 0660). Outside systemd, flashed configs used to be 0644."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of
from gateway.flashing.store import ConfigStore
from gateway.ingest.catalogs import CatalogStore
from gateway.ingest.deadletter import DeadLetterLog
from gateway.ingest.dedup import SeenStore
from gateway.localservices import free_port
from gateway.storage import atomic_write, open_sqlite
from tests.apply.conftest import ask, edit_config, running_service


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def loose(root: Path) -> list[str]:
    """Everything under `root` that others (or, but for the control socket, the group) may
    read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            continue
        allowed = 0o660 if stat.S_ISSOCK(info.st_mode) else 0o700
        if mode & ~allowed:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


async def test_a_gateway_under_umask_000_keeps_its_files_private(tmp_path: Path) -> None:
    with umask(0):
        private_path, _public = new_key_pair(tmp_path / "home" / ".config" / "keys", "ops")
        key = load_private_key(private_path)

        def trusting_with_uplink(data: dict[str, Any]) -> None:
            data["flashing"]["trusted_keys"] = [public_key_line(public_of(key), "ops")]
            data["uplink"] = {"broker": "127.0.0.1", "port": free_port()}  # nobody there

        async with running_service(tmp_path, change=trusting_with_uplink) as run:
            gw = run.service.gateway
            text = edit_config(run.text, lambda d: d["rooms"][0].update(name="renamed"))
            envelope = sign_config(text, gateway=gw.loaded.config.gateway.id, version=1,
                                   author="alice", private_key=key)
            answers = await ask(run.control, {"op": "apply",
                                              "envelope": envelope.model_dump(mode="json")})
            assert answers[-1]["result"]["state"] == "applied", answers[-1]
            state = tmp_path / "state"
            names = {p.name for p in state.rglob("*")}
            assert {"alarms.sqlite", "config.yaml", "seen.json", "state.json"} <= names, names
            assert any(n.endswith(".sqlite") and "outbox" in n for n in names), names
            assert loose(state) == []
        # every directory made for the key 0700; the public half is meant to be shared
        assert loose(tmp_path / "home") == ["home/.config/keys/ops.pub 0644"]


def test_the_ingest_stores_under_umask_000_are_private(tmp_path: Path) -> None:
    with umask(0):
        root = tmp_path / "ingest" / "nested"
        catalogs = CatalogStore(root / "catalogs.sqlite")
        seen = SeenStore(root / "seen.sqlite")
        dead = DeadLetterLog(root / "dead.jsonl")
        dead.add("t", b"junk", "bad", 1)
        dead.close()
        assert {p.name for p in root.iterdir()} >= {"catalogs.sqlite", "seen.sqlite",
                                                     "dead.jsonl"}
        assert loose(tmp_path / "ingest") == []
        del catalogs, seen


def test_a_database_left_world_readable_by_an_older_version_is_narrowed(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with umask(0):
        path.write_bytes(b"")
        path.chmod(0o644)
        conn = open_sqlite(path, synchronous="FULL")
        conn.execute("CREATE TABLE t (x)")
        conn.close()
    assert loose(tmp_path) == []


def test_a_config_store_left_readable_by_an_older_version_is_narrowed(tmp_path: Path) -> None:
    """The upgrade audit: an older version's flashed configs (with the panel users' password
    hashes) were 0644 in 0755 directories, and stayed so after an upgrade."""
    root = tmp_path / "config"
    store = ConfigStore(root)
    store.keep_installed("site: a\n")
    (root / "stray.txt").write_text("x")
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert loose(tmp_path)
    ConfigStore(root)
    assert loose(tmp_path) == []


def test_atomic_write_replaces_whole_private_and_leaves_no_temporary(tmp_path: Path) -> None:
    """`atomic_write` (the warm-start file, flashing state): the new content whole at 0600
    under umask 000, a symlink in its place replaced rather than followed, and no temporary
    file left beside it — also when writing the pieces fails half-way (the old file stays)."""
    target = tmp_path / "state.bin"
    old = os.umask(0)
    try:
        atomic_write(target, b"first")
        decoy = tmp_path / "decoy"
        decoy.write_bytes(b"untouched")
        target.unlink()
        target.symlink_to(decoy)
        atomic_write(target, [b"sec", b"ond"])
    finally:
        os.umask(old)
    assert not target.is_symlink() and target.read_bytes() == b"second"
    assert decoy.read_bytes() == b"untouched"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise OSError("disk gone")

    with contextlib.suppress(OSError):
        atomic_write(target, broken())
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoy", "state.bin"]
