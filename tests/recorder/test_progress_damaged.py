"""A progress file with one member of another shape than the keeper writes (gzip-valid,
`{"samples": []}`) is damage of that one incident: the start's recovery goes on for the others
and `incident show` says it is damaged. It raised AttributeError, which stopped the recovery of
every incident (the other one stayed `open` and was never sent) and printed a traceback (the
restart audit)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from gateway.recorder.progress import mark_interrupted
from gateway.recorder.store import IncidentStore, dump
from tests.recorder.keeper_rig import stored_record
from tests.recorder.test_incident_cli import roomwarden

DAMAGED, OTHER = "20261207T220000Z-tx-5", "20261207T221000Z-tx-9"


def member(entry: dict[str, Any]) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    return deflate.compress(dump(entry).encode()) + deflate.flush()


def damaged_store(directory: Path) -> IncidentStore:
    """Two open records a dead process left; the first's progress file has a samples member
    that is a list."""
    store = IncidentStore(directory / "incidents")
    store.save(stored_record(DAMAGED, "open"))
    store.save(stored_record(OTHER, "open"))
    head = stored_record(DAMAGED, "open")
    points = head.pop("points")
    update = {"until_ns": 20, "at_save": {}, "dropped": None, "cut": None, "events": [],
              "output_changes": [], "saved_ns": 5}
    store.progress_path_of(DAMAGED).write_bytes(
        member({"head": head, "points": points}) + member({"samples": []})
        + member({"update": update}))
    return store


def test_a_damaged_progress_member_stops_the_recovery_of_no_other_incident(
        tmp_path: Path) -> None:
    store = damaged_store(tmp_path)
    marked = mark_interrupted(store)
    assert OTHER in marked
    assert store.status_of(OTHER) == "interrupted"


def test_incident_show_says_the_progress_is_damaged(tmp_path: Path) -> None:
    damaged_store(tmp_path)
    shown = roomwarden("incident", "show", DAMAGED, "--state-dir", tmp_path)
    assert "Traceback" not in shown.stderr, shown.stderr
    assert shown.returncode == 1
    assert "is damaged: member 2: samples missing or not a dict" in shown.stderr
