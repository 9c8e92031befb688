"""An alarm event journalled but never committed to the outbox (the process died in the
milliseconds between the two commits) is handed to the outbox at the next start."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

from gateway.alarms.types import Evaluation, Severity
from gateway.config.loader import load_gateway_config
from gateway.config.section import replaced, validator
from gateway.daemon import Gateway
from gateway.uplink.settings import UplinkSettings

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


def alarm_payloads(state: Path) -> list[dict[str, object]]:
    with sqlite3.connect(state / "uplink" / "outbox.sqlite") as db:
        rows = db.execute("SELECT payload FROM messages WHERE topic LIKE '%/alarms' "
                          "ORDER BY id").fetchall()
    return [json.loads(r[0]) for r in rows]


def make(state: Path) -> Gateway:
    loaded = load_gateway_config(SITE)
    # a broker nobody listens on: the outbox keeps everything
    uplink = validator(UplinkSettings).validate_python({"broker": "127.0.0.1", "port": 9})
    config = replaced(loaded.config, uplink=uplink)
    return Gateway(dataclasses.replace(loaded, config=config), state_dir=state)


async def test_journalled_but_unsent_events_are_sent_at_the_next_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = make(state)
    assert first.uplink is not None and first.uplink.alarm_events_stored() == 0
    first.uplink.outbox.flush()
    def evaluation(active: bool) -> Evaluation:
        return Evaluation(rule="fire.smoke_coincidence", subject="tx-3f", active=active,
                          value=True, severity=Severity.CRITICAL, ts=time.time_ns(),
                          title="confirmed fire", room="tx-3f")

    # journalled, never handed to the uplink: what a SIGKILL between the commits leaves
    lost = first.core.alarms.observe([evaluation(True)])
    lost += first.core.alarms.acknowledge([("fire.smoke_coincidence", "tx-3f")], "tech", None)
    assert lost
    first.core.close()
    first.uplink.outbox.close()
    assert alarm_payloads(state) == []

    second = make(state)
    assert second.uplink is not None
    second.uplink.committer.close()  # commit what is buffered (no writer thread yet)
    sent = alarm_payloads(state)
    assert [m["seq"] for m in sent] == [e.seq for e in lost]
    assert second.uplink.alarm_events_stored() == lost[-1].seq
    second.core.close()

    # and a third start sends nothing again
    third = make(state)
    assert third.uplink is not None
    third.uplink.committer.close()  # commit what is buffered (no writer thread yet)
    assert [m["seq"] for m in alarm_payloads(state)] == [e.seq for e in lost]
    third.core.close()
