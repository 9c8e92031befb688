"""A confirmed fire on a simulated room, through the real gateway: one incident holding the
samples at poll resolution from before the trigger (also the small changes the uplink's
deadband drops), the acknowledgement with its actor and note, the siren's write and read-back,
the config identity and health; saved 0600 in the state directory."""

from __future__ import annotations

import itertools
import stat
import time

from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample
from gateway.recorder.store import IncidentStore
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy
from tests.recorder.conftest import FIRE, MAX_DURATION, POLL, PRE, Rig, confirmed_fire


async def test_a_confirmed_fire_leaves_one_incident_with_the_evidence(rig: Rig) -> None:
    gateway = rig.gateway
    incident_id = await confirmed_fire(rig)
    store = IncidentStore(rig.state_dir / "incidents")
    assert store.ids() == [incident_id]
    path = store.path_of(incident_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = store.load(incident_id)
    trigger = record["trigger"]
    assert (trigger["rule"], trigger["subject"], trigger["severity"]) == (*FIRE, "critical")
    # the single detectors' alarms (major) before it are part of the record
    assert {e["subject"] for e in record["events"] if e["rule"] == "fire.smoke_detector"} == {
        "smoke-1.alarm", "smoke-2.alarm"}
    fire = [e for e in record["events"] if (e["rule"], e["subject"]) == FIRE]
    assert fire[0]["state"] == "active_unacknowledged" and fire[0]["severity"] == "critical"
    # the latched fire alarm stays active (acknowledged) after the detectors reset: the
    # incident was kept open while it was, up to its cap
    assert fire[-1]["state"] == "active_acknowledged"
    assert record["until_ns"] == trigger["ts"] + int(MAX_DURATION * 1e9)
    assert record["room"] == "tx" and record["gateway"] == "gw-rec"
    assert record["config"]["sha256"] == gateway.config_sha256
    assert record["health"]["at_trigger"]["buses"][0]["id"] == "rs485"
    trigger_ms = trigger["ts"] // 1_000_000

    # samples at poll resolution from `pre` before the trigger, of every point of the room
    temps = record["points"]["th-1.temperature"]
    before = [t for t in temps["ts"] if t < trigger_ms]
    assert before[0] <= trigger_ms - (PRE - 1.0) * 1000
    gaps = [b - a for a, b in itertools.pairwise(before)]
    assert max(gaps) < POLL * 1000 * 2.5, gaps  # every poll, none thinned out
    assert len(before) >= PRE / POLL - 2
    assert set(temps["q"]) == {"g"}
    assert temps["ts"][-1] >= record["until_ns"] // 1_000_000 - 2 * POLL * 1000  # to the end
    assert {"smoke-1.alarm", "smoke-2.alarm", "do-1.do1"} <= set(record["points"])
    smoke = record["points"]["smoke-1.alarm"]
    assert smoke["v"][0] is False and True in smoke["v"]

    # the uplink's deadband (0.5 °C for temperature) would have sent a fraction of them
    uplink = ExceptionFilter(ExceptionPolicy(deadband_by_quantity={"temperature": 0.5}),
                             ManualClock(), quantity_of=lambda point: "temperature")
    samples = [Sample("th-1.temperature", v, t * 1_000_000, Quality.GOOD)
               for t, v in zip(temps["ts"], temps["v"], strict=True)]
    sent = sum(len(uplink.filter([s])) for s in samples)
    assert sent < len(samples) / 2, (sent, len(samples))
    assert len(set(temps["v"])) > sent  # distinct values the uplink never saw are here

    # the acknowledgement with its actor and note
    acks = [e for e in record["events"] if e["state"] == "active_acknowledged"]
    assert [(e["actor"], e["note"]) for e in acks] == [
        ("alice", "checked the room: burning cable tray")]
    # the siren's writes and read-backs: on after the trigger, then off after the ack
    writes = [c for c in record["output_changes"]
              if c["output"] == "siren-tx" and c["kind"] == "write"]
    on = [c for c in writes if (c["written"], c["read_back"], c["error"]) == (True, True, None)]
    assert on and on[0]["ts"] >= trigger["ts"], writes
    assert (writes[-1]["written"], writes[-1]["read_back"]) == (False, False)
    assert writes[-1]["ts"] >= acks[0]["ts"]
    # the coil as the relay module's own polls saw it
    coil = record["points"]["do-1.do1"]
    assert True in coil["v"] and coil["v"][0] is False
    # the fire rule's binding is there (for the report)
    assert any(r["rule"] == FIRE[0] for r in record["rules"])
    assert record["until_ns"] > trigger["ts"] and record["from_ns"] < trigger["ts"]
    assert time.time_ns() >= record["until_ns"]
