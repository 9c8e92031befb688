"""Applies when the state directory fails, and the installed file's config kept (from the apply
audit, against real processes): a gateway running its installed file (version 0) kept no copy
of it, so a refused typo in the file plus a restart left it unable to start; a disk that
filled between staging and commit left the candidate running uncommitted (the client got
`internal error`, a restart went back silently); a full state directory made every apply path
fail with an unhandled error (SIGHUP's and a flash's unobserved)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway.flashing.store
import gateway.storage
from gateway.flashing.store import ConfigStore
from gateway.supervisor import Service
from tests.apply.conftest import Running, ask, booted, device, edit_config, until


def states(answers: list[dict[str, Any]]) -> list[str]:
    return [a["progress"]["state"] for a in answers if "progress" in a]


def offset(data: dict[str, Any]) -> None:
    device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": -0.5}


def typo(data: dict[str, Any]) -> None:
    device(data, "smoke-tx-02")["profile"] = "generic_smoke_detectr"


class DiskFull:
    """The config store's atomic writes (state.json, seen.json, a commit's meta) fail with
    ENOSPC while `full` — what a state directory that filled up does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        real = gateway.storage.atomic_write  # what gateway.flashing.store calls

        def write(path: Path, data: Any, *args: Any, **kwargs: Any) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real(path, data, *args, **kwargs)

        monkeypatch.setattr(gateway.flashing.store, "atomic_write", write)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[DiskFull]:
    yield DiskFull(monkeypatch)


def restarted(run: Running, name: str) -> contextlib.AbstractAsyncContextManager[Service]:
    """A new service on the same installed file and state directory (after a restart)."""
    return booted(run.tmp, run.factory, name)


async def kept(store: ConfigStore, sha256: str) -> None:
    await until(lambda: (m := store.active_meta()) is not None and m.sha256 == sha256, 20,
                "the booted installed file kept as last-known-good")


async def settled(run: Running) -> None:
    """The boot's own writes done (the installed file kept, right after the first round)."""
    gw = run.service.gateway
    rounds = gw.evaluations
    await until(lambda: gw.evaluations >= rounds + 2, 20, "two more rounds of the rules")


async def test_a_broken_installed_file_restarts_on_the_config_it_ran(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """The audit's `d_boot_bricked`: typo, SIGHUP (refused), restart -> exit 1 ('profile
    not found'), no polling, no alarms, no siren. Now the restart boots the config the
    gateway booted and ran from the file, and says why; a fixed file is booted again."""
    caplog.set_level(logging.INFO)
    gw = running.service.gateway
    store = running.service.store
    good_sha = gw.config_sha256
    await settled(running)
    good = running.text
    running.factory.write_text(edit_config(good, typo), encoding="utf-8")
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: "event=reload_rejected" in caplog.text, 30, "the typo refused")
    assert gw.config_version == 0
    running.service.stop()
    await until(lambda: gw._group is None, 20, "the gateway stopped")

    async with restarted(running, "after-typo") as service:  # raised BootFailed before
        meta = store.active_meta()  # what it booted and ran, kept
        assert meta is not None and (meta.version, meta.source, meta.sha256) == (
            0, "factory", good_sha)
        assert (service.gateway.config_version, service.gateway.config_sha256) == (0, good_sha)
        assert "event=installed_config_broken" in caplog.text
        assert "generic_smoke_detectr" in caplog.text and good_sha[:12] in caplog.text
        assert service.gateway.loaded.config.devices == gw.loaded.config.devices
        # SIGHUP with the file still broken: refused again, the kept config runs on
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: "event=reload_unchanged" in caplog.text, 10, "nothing to do")

    # the file fixed (another edit): booted at the next start, and kept in its turn
    running.factory.write_text(edit_config(good, offset), encoding="utf-8")
    async with restarted(running, "after-fix") as service:
        fixed_sha = service.gateway.config_sha256
        assert service.gateway.config_version == 0 and fixed_sha != good_sha
        th = next(d for d in service.gateway.loaded.config.devices if d.id == "th-tx-a03")
        assert th.points["temperature"].offset == -0.5
        await kept(service.store, fixed_sha)
    # an applied version keeps its meaning: it, not the installed file, is what boots
    choice = ConfigStore(running.tmp / "state" / "config").boot(running.factory)
    assert choice.meta.sha256 == fixed_sha


async def test_a_commit_that_fails_rolls_back_and_the_store_agrees(
        running: Running, disk: DiskFull, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's `d_commit_fail.py full`: the disk fills while the candidate is on trial.
    It was left running uncommitted (`internal error`, state.json `applying`, a restart
    silently back at v0); now it is rolled back and said so."""
    gw = running.service.gateway
    store = running.service.store
    await settled(running)
    before = (gw.config_version, gw.config_sha256)
    begin_trial = gw.begin_trial

    def fill_then_begin() -> Any:  # right after `applying`: staged, not committed
        disk.full = True
        return begin_trial()

    monkeypatch.setattr(gw, "begin_trial", fill_then_begin)
    answers = await ask(running.control, {"op": "apply", "author": "tech",
                                          "config": edit_config(running.text, offset)})
    assert states(answers) == ["received", "staged", "applying", "rolled_back"]
    result = answers[-1]["result"]
    assert result["code"] == "commit_failed"
    assert "state directory full" in result["error"]
    assert (gw.config_version, gw.config_sha256) == before  # the config the store names
    assert (result["active_version"], result["active_sha256"]) == before
    assert gw.trial is None
    meta = store.active_meta()
    assert meta is None or meta.sha256 == before[1]
    disk.full = False
    # a restart boots what ran (the staged candidate reported as interrupted)
    choice = ConfigStore(running.tmp / "state" / "config").boot(running.factory)
    assert choice.meta.sha256 == before[1]
    await until(running.all_online, 20, "the previous config polls again")


async def test_a_full_state_directory_refuses_every_apply_clearly(
        running: Running, disk: DiskFull, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's `d_disk_full`: the control socket answered `internal error`; SIGHUP left a
    'Task exception was never retrieved' at best. Now: a refusal with a code, logged; the
    config runs on; nothing half-written is left in the store."""
    caplog.set_level(logging.INFO)
    gw = running.service.gateway
    store = running.service.store
    await settled(running)
    configs = running.tmp / "state" / "config" / "configs"
    on_disk = sorted(os.listdir(configs))
    disk.full = True
    answers = await ask(running.control, {"op": "apply", "author": "tech",
                                          "config": edit_config(running.text, offset)})
    assert states(answers) == ["received", "rejected"]
    result = answers[-1]["result"]
    assert result["code"] == "storage_error"
    assert result["error"].startswith("state directory full: ")
    assert sorted(os.listdir(configs)) == on_disk  # the staged generation removed
    assert not store.applying and gw.config_version == 0 and gw.reconfigurations == 0

    running.factory.write_text(edit_config(running.text, offset), encoding="utf-8")
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: "event=reload_rejected" in caplog.text, 20, "the reload refused")
    assert "code=storage_error error=state directory full" in caplog.text
    assert sorted(os.listdir(configs)) == on_disk and gw.config_version == 0

    # space again: the same edit goes through
    disk.full = False
    answers = await ask(running.control, {"op": "apply", "author": "tech",
                                          "config": edit_config(running.text, offset)})
    assert states(answers)[-1] == "applied" and gw.config_version >= 1

    # whatever still fails in a background task is logged, not left to the garbage collector
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug in the reload")

    monkeypatch.setattr(running.service.applier, "reload", broken)
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: "event=task_failed task=reload" in caplog.text, 10,
                "the failed reload logged")
