"""`roomwarden incident list | show` on what the state directory holds, as a technician runs
them: one parseable record without a trigger took the whole listing down with a traceback
(and the control socket's answer with it), and a note's newline or escape sequence was printed
as it is — a forged timeline line, `ESC[8m` hiding the lines after it (the incident audit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.recorder.remote import answer_now
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import T0, stored_record

GOOD, BROKEN = "20261201T020000Z-tx-1", "20261201T030000Z-tx-2"


def roomwarden(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_a_misshapen_record_is_listed_unreadable_and_the_others_still_show(
        tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    store.save(stored_record(GOOD, "closed"))
    broken = stored_record(BROKEN, "closed")
    del broken["trigger"]
    store.save(broken)
    listing = roomwarden("incident", "list", "--state-dir", tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert GOOD in listing.stdout and "fire.smoke @ tx" in listing.stdout
    assert f"{BROKEN}" in listing.stdout and "unreadable" in listing.stdout
    assert "trigger missing" in listing.stdout and "Traceback" not in listing.stderr
    answer = answer_now(store, {"action": "list"})  # the control socket's answer too
    assert answer["ok"] is True and [r["status"] for r in answer["incidents"]] == [
        "closed", "unreadable"]
    shown = roomwarden("incident", "show", BROKEN, "--state-dir", tmp_path)
    assert shown.returncode == 1 and "not a whole record: trigger missing" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_a_note_cannot_forge_or_hide_timeline_lines(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    record = stored_record(GOOD, "closed")
    record["events"] = [{
        "seq": 7, "ts": T0 + 10**9, "kind": "acknowledge", "rule": "fire.smoke",
        "subject": "tx", "state": "active_acknowledged", "previous_state":
        "active_unacknowledged", "value": True, "severity": "critical", "actor": "mallory",
        "note": "ok\n    16:27:20.000  alarm   fire out  normal  by system\x1b[8m",
        "first_out": False, "room": "tx", "title": "Fire", "chattering": False,
        "drill": False}]
    store.save(record)
    shown = roomwarden("incident", "show", GOOD, "--state-dir", tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "mallory" in line]
    assert len(lines) == 1 and "\\n" in lines[0] and "\\x1b[8m" in lines[0]
    assert "\x1b" not in shown.stdout
    assert not any(line.lstrip().startswith("16:27:20.000") for line in shown.stdout.splitlines())


def test_a_record_made_before_the_clock_was_set_is_not_pruned_first(tmp_path: Path) -> None:
    """Pruning went by the time in the id: the newest fire, recorded while the clock was not
    yet set (2000-01-01), sorted oldest and was deleted at the very next save. It goes by the
    trigger's journal sequence."""
    store = IncidentStore(tmp_path / "incidents", max_incidents=3)
    for incident_id in ("20261201T020000Z-tx-1", "20261201T030000Z-tx-2",
                        "20261201T040000Z-tx-3", "20000101T000512Z-tx-4"):
        store.save(stored_record(incident_id, "closed"))
    assert "20000101T000512Z-tx-4" in store.ids()
    assert "20261201T020000Z-tx-1" not in store.ids()
    store.save(stored_record("20261201T050000Z-tx-5", "closed"))
    assert sorted(store.ids()) == sorted(["20261201T040000Z-tx-3", "20000101T000512Z-tx-4",
                                          "20261201T050000Z-tx-5"])
