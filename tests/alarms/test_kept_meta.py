"""Meta keys other parts of the gateway keep in the alarm journal (`AlarmLedger.keep`: the coil
releases of gateway.actions.release): found again by the next manager on the file (a restart),
rewritten into a fresh file after a recovery, and nothing but the keys it knows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.alarms.journal import Journal
from gateway.alarms.ledger import COIL_RELEASES
from tests.alarms.conftest import MakeManager, ev


def test_a_kept_value_is_found_again_after_a_restart(make_manager: MakeManager,
                                                     journal_path: Path) -> None:
    first = make_manager()
    assert first.kept(COIL_RELEASES) is None
    assert first.keep(COIL_RELEASES, '{"version":1,"releases":[]}') == []
    first.observe([ev(subject="a")])  # other commits leave it as it is
    assert first.kept(COIL_RELEASES) == '{"version":1,"releases":[]}'
    first.close()  # (the value was committed by `keep` itself: a crash keeps it too)
    with sqlite3.connect(journal_path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = ?",
                            (COIL_RELEASES,)).fetchone() == ('{"version":1,"releases":[]}',)
    assert make_manager().kept(COIL_RELEASES) == '{"version":1,"releases":[]}'


def test_a_kept_value_is_rewritten_into_a_fresh_journal_after_a_recovery(
        make_manager: MakeManager, journal_path: Path) -> None:
    manager = make_manager()
    manager.keep(COIL_RELEASES, "pending")
    journal: Journal = manager._journal

    def broken(*args: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    original = journal._write
    journal._write = broken  # type: ignore[assignment,method-assign]
    manager.observe([ev(subject="c")])  # the file is moved aside, a fresh one started
    journal._write = original  # type: ignore[method-assign]
    assert journal.needs_snapshot
    manager.observe([ev(subject="d")])  # rewrites the state into the fresh file
    manager.close()
    assert list(journal_path.parent.glob("alarms.sqlite.corrupt-*"))
    assert make_manager().kept(COIL_RELEASES) == "pending"


def test_only_known_keys_are_kept(make_manager: MakeManager) -> None:
    manager = make_manager()
    with pytest.raises(ValueError, match="not a kept meta key"):
        manager.keep("last_seq", "0")


@pytest.mark.parametrize(("key", "value"), [
    ("flood", "null"), ("flood", "[]"), ("flood", '{"activations": 5}'),
    ("first_out", "null"), ("first_out", '[["room"]]'), ("output_holds", "7"),
    ("drill_open", "[1]")])
def test_a_meta_value_of_a_shape_no_version_wrote_is_dropped_not_a_failed_start(
        make_manager: MakeManager, journal_path: Path, key: str, value: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """An audit set the journal's `flood` to `null` while an alarm was active: the next start
    failed with AttributeError (under systemd, every start: no sirens driven). The value is
    dropped and said; the alarms come back."""
    first = make_manager()
    first.observe([ev(subject="a")])
    first.close()
    with sqlite3.connect(journal_path) as conn:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
    again = make_manager()
    assert [a.key.subject for a in again.active()] == ["a"]
    assert f"event=alarm_meta_unreadable key={key}" in caplog.text
