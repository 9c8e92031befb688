"""The incident store at a gateway's start: no stored record is read whole (the first alarm
never waits on them) yet records a dead process left `open` are marked `interrupted`, and the
temporaries of saves a SIGKILL or a power loss cut short are removed (only the store's own)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

import gateway.recorder.store as store_module
from gateway.contract.wire import parse_record
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import FakeSources, keeper_of, stored_record

IDS = [f"20261201T0{i}0000Z-tx-{i + 1}" for i in range(6)]


def test_start_reads_no_record_body_and_still_marks_open_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = IncidentStore(tmp_path / "incidents")
    for i, incident_id in enumerate(IDS):
        store.save(stored_record(incident_id, "open" if i in (2, 5) else "closed",
                                 filler=20_000))
    # a record written by hand with its keys in another order: found (later) all the same
    odd = stored_record("20261201T090000Z-tx-99", "open")
    odd = {"status": odd.pop("status"), **odd}
    store.save(odd)
    before = {i: store.read(i) for i in store.ids()}

    loads: list[str] = []

    def counted(data: bytes, what: str) -> dict[str, Any]:
        loads.append(what)
        return parse_record(data, what)

    monkeypatch.setattr(store_module, "parse_wire_record", counted)
    keeper, _ = keeper_of(store, FakeSources())
    assert loads == []  # building the keeper (the gateway's constructor) reads no record
    keeper.close_all()  # waits for the writer thread, which marks them

    marked = [IDS[2], IDS[5], odd["id"]]
    assert sorted(keeper.recovered) == sorted(marked)
    assert len(loads) == 1  # only the record whose status is not at its head, on the writer
    monkeypatch.setattr(store_module, "parse_wire_record", parse_record)
    for incident_id, data in before.items():
        record = store.load(incident_id)
        if incident_id in marked:
            assert record["status"] == "interrupted"
            original = json.loads(zlib.decompress(data, wbits=31))
            assert record == {**original, "status": "interrupted"}  # nothing else changed
        else:
            assert store.read(incident_id) == data  # untouched


def test_a_damaged_open_record_is_left_as_it_is(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    store.save(stored_record(IDS[0], "open", filler=5000))
    path = store.path_of(IDS[0])
    damaged = path.read_bytes()[:-40]  # cut short: its head still says open
    path.write_bytes(damaged)
    keeper, _ = keeper_of(store, FakeSources())
    keeper.close_all()  # waits for the writer thread
    assert keeper.recovered == []
    assert path.read_bytes() == damaged
    assert [p.name for p in store.directory.iterdir()] == [path.name]  # no temporary left


def test_stale_temporaries_are_removed_at_start(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    store.save(stored_record(IDS[0], "closed"))
    directory = store.directory
    stale = [f".{IDS[1]}.json.gz.0123456789.tmp", f".{IDS[0]}.json.gz.abcdefabcd.tmp"]
    for name in stale:
        (directory / name).write_bytes(b"\0" * 512 * 1024)
    (directory / f".{IDS[2]}.json.gz.0123456789.tmp").write_bytes(b"")
    stale.append(f".{IDS[2]}.json.gz.0123456789.tmp")
    others = [".notes.tmp", "x.tmp", f".{IDS[1]}.json.gz.tmp", "readme.txt"]
    for name in others:
        (directory / name).write_text("not the store's")
    (directory / ".sub.json.gz.0123456789.tmp").mkdir()  # a directory: not ours either
    keeper, _ = keeper_of(store, FakeSources())
    keeper.close_all()  # waits for the writer thread
    left = sorted(p.name for p in directory.iterdir())
    assert left == sorted([*others, ".sub.json.gz.0123456789.tmp", f"{IDS[0]}.json.gz"])
    assert store.ids() == [IDS[0]]
