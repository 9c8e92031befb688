"""Lists of incidents read each record's head, never the record whole; a record over the
control socket travels as its file, in parts, and the client parses it.

A record can hold millions of samples: `incident list --socket` and the panel's list parsed
every record whole inside the gateway (json holds the interpreter while it parses: 0.5 s and
~700 MiB for 90 MB of record on this machine, several times that on a Pi), and
`incident show --socket` parsed one there and sent it back as one JSON line."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.control import request
from gateway.recorder.heads import (
    BODY_KEYS,
    WHOLE_FILE_BYTES,
    head_of,
    head_of_text,
    panel_row,
    summary,
)
from gateway.recorder.remote import PART_BYTES, received_record
from gateway.recorder.store import IncidentError, IncidentStore, dump
from tests.recorder.conftest import Rig
from tests.recorder.keeper_rig import FakeSources, alarm, feed, keeper_of, stored_record

BIG = "20261201T020000Z-tx-1"


def big_record(incident_id: str = BIG, samples: int = 400_000) -> dict[str, Any]:
    """A record whose file is well past `WHOLE_FILE_BYTES` and `PART_BYTES` (noise does not
    compress)."""
    record = stored_record(incident_id, "closed")
    rnd = random.Random(7)
    record["points"] = {"a.v": {"ts": list(range(samples)),
                                "v": [rnd.random() for _ in range(samples)],
                                "q": "g" * samples}}
    return record


def test_the_keepers_records_list_the_same_from_their_heads(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources)
    feed(recorder, sources, 3.0, rate=50)
    sources.events.append(alarm(1, sources.now))
    keeper.observe()
    feed(recorder, sources, 2.0, rate=50)
    keeper.close_all()
    odd = stored_record("20261201T030000Z-tx-2", "closed")
    odd["room"] = 'tx "north" \\ 机房 }{'
    odd["trigger"]["note"] = 'a "quoted", \\ note\nwith ] and } and \u2028'
    store.save(odd)  # (as a record written before `event_count`)
    kept, _ = store.ids()
    for incident_id in store.ids():
        whole = store.load(incident_id)
        head = head_of(store, incident_id)
        assert "points" not in head and "rules" not in head  # only the head was read
        assert summary(head) == summary(whole)
        assert panel_row(head_of(store, incident_id, want="event_count")) == panel_row(whole)
    assert "event_count" in head_of(store, kept, want="event_count")
    assert "points" in head_of(store, "20261201T030000Z-tx-2", want="event_count")
    # (a small record without it is read whole for the panel's count; a large one is not)


def test_a_large_record_is_listed_from_its_head_or_not_read(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    store.save(big_record())
    assert store.path_of(BIG).stat().st_size > WHOLE_FILE_BYTES
    assert summary(head_of(store, BIG)) == summary(store.load(BIG))
    assert panel_row(head_of(store, BIG, want="event_count"))["events"] is None
    # the same record with its keys in another order (written by hand): not read whole
    other = "20261201T040000Z-tx-3"
    record = {**big_record(other), "format": "roomwarden-incident/1"}
    reordered = {"points": record.pop("points"), **record}
    store.write(other, [dump(reordered)])
    with pytest.raises(IncidentError, match="do not hold the head"):
        head_of(store, other)
    # a small one in another order is read whole
    small = "20261201T050000Z-tx-4"
    record = stored_record(small, "closed")
    store.write(small, [json.dumps(record, indent=2, sort_keys=True)])
    assert summary(head_of(store, small)) == summary(record)


keys = st.text(min_size=1, max_size=8).filter(lambda k: k not in BODY_KEYS)
values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(before=st.dictionaries(keys, values, max_size=4),
       trigger=st.dictionaries(st.text(max_size=6), values, max_size=4),
       after=st.dictionaries(keys, values, max_size=3), cut=st.integers(0, 2000),
       indent=st.sampled_from([None, 1]))
def test_a_head_is_its_keys_before_the_large_ones_and_a_cut_text_never_lies(
        before: dict[str, Any], trigger: dict[str, Any], after: dict[str, Any], cut: int,
        indent: int | None) -> None:
    before.pop("trigger", None)
    after.pop("trigger", None)
    record = {**before, "trigger": trigger, **{k: v for k, v in after.items()
                                               if k not in before}, "points": {"a": [1, 2]}}
    text = json.dumps(record, indent=indent, ensure_ascii=False)
    head = {k: v for k, v in record.items() if k != "points"}
    assert head_of_text(text) == head
    partial = head_of_text(text[:cut])
    if partial is not None:  # a prefix of the head, with the trigger whole
        assert partial["trigger"] == trigger
        assert list(partial) == list(head)[:len(partial)]
        assert all(partial[k] == head[k] for k in partial)


def test_a_number_cut_short_is_not_read_as_a_number() -> None:
    """The example hypothesis found (its database is not in the repository): a text cut after
    `-1` of `-10`, or after `tru` of `true`, leaves that key out of the head."""
    text = json.dumps({"trigger": {"rule": "r"}, "count": -10, "seen": True, "points": {}})
    cut = text.index("-10") + 2
    assert head_of_text(text[:cut]) == {"trigger": {"rule": "r"}}
    assert head_of_text(text[:text.index("true") + 3]) == {"trigger": {"rule": "r"},
                                                         "count": -10}
    assert head_of_text(text) == {"trigger": {"rule": "r"}, "count": -10, "seen": True}


async def test_a_record_over_the_control_socket_comes_in_parts_and_is_checked(
        rig: Rig) -> None:
    store = IncidentStore(rig.state_dir / "incidents")
    store.save(big_record())
    size = store.path_of(BIG).stat().st_size
    answers = await asyncio.to_thread(
        lambda: list(request(rig.control, {"op": "incident", "action": "get", "id": BIG},
                             timeout=60)))
    parts = [a for a in answers if "part" in a]
    assert len(parts) == -(-size // PART_BYTES) >= 2
    assert answers[-1]["ok"] is True and answers[-1]["bytes"] == size
    assert received_record(BIG, answers) == store.load(BIG)
    tampered = [*answers[:-1], {**answers[-1], "sha256": "0" * 64}]
    with pytest.raises(IncidentError, match="not what the gateway sent"):
        received_record(BIG, tampered)
    missing = await asyncio.to_thread(
        lambda: list(request(rig.control, {"op": "incident", "action": "get",
                                           "id": "20261201T020000Z-tx-9"}, timeout=60)))
    assert missing == [{"ok": False, "error": "no incident 20261201T020000Z-tx-9 in "
                                              f"{store.directory}"}]
    shown = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "incident", "show", BIG, "--socket",
                         str(rig.control)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "1 points, 400000 samples" in shown.stdout
    listed = await asyncio.to_thread(
        lambda: list(request(rig.control, {"op": "incident", "action": "list"}, timeout=60)))
    assert [r["id"] for r in listed[-1]["incidents"]] == [BIG]
