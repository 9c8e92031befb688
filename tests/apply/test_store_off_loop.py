"""The config store's writes run off the event loop (liveness audit L4): keeping the booted
config and its profiles right after the start did 16 fsyncs on the loop's thread, and with a
slow disk (3 s an fsync) the loop was blocked 18 s: no polling, no rules. The writes of an
apply (stage, commit, profiles kept) go the same way.

Every fsync the process makes from Python (`os.fsync`: the store's atomic writes and their
directories) is recorded with the thread it ran on and the file it synced, then done; the
store's must all have run on a thread other than the event loop's."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.apply.conftest import ask, device, edit_config, running_service, until


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """(thread id, path) of every `os.fsync`, which still syncs."""
    seen: list[tuple[int, str]] = []
    real = os.fsync

    def recorded(fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = "?"
        seen.append((threading.get_ident(), path))
        real(fd)

    monkeypatch.setattr(os, "fsync", recorded)
    return seen


def of_store(seen: list[tuple[int, str]], store: Path) -> list[tuple[int, str]]:
    root = str(store.resolve())
    return [(thread, path) for thread, path in seen if path.startswith(root)]


async def test_the_config_store_is_written_off_the_event_loop(
        tmp_path: Path, fsyncs: list[tuple[int, str]]) -> None:
    loop_thread = threading.get_ident()
    async with running_service(tmp_path) as run:
        store = run.service.store
        await until(lambda: store.active_meta() is not None, 30,
                    "the installed file's config kept")
        await until(lambda: bool(list(store.configs.glob("*/profiles/*"))), 30,
                    "its profiles kept")
        kept = of_store(fsyncs, store.root)
        assert len(kept) >= 5, kept  # the audit counted 16
        assert [p for thread, p in kept if thread == loop_thread] == []

        def offset(data: dict[str, object]) -> None:
            device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {
                "offset": -0.5}

        answers = await ask(run.control, {"op": "apply", "author": "alice",
                                          "config": edit_config(run.text, offset)})
        assert answers[-1]["ok"] is True, answers[-1]
        applied = of_store(fsyncs, store.root)[len(kept):]
        assert len(applied) >= 5, applied  # staged, committed, profiles kept
        assert [p for thread, p in applied if thread == loop_thread] == []
