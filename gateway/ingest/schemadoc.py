"""docs/influx-schema.md's tables and example lines, generated from gateway.ingest.schema.

Each measurement's tags and fields (with their line-protocol types) are read off the lines the
schema code builds for sample messages that exercise every optional part, and the examples are
those lines themselves — so the document cannot name a measurement, tag or field the ingest
does not write. The document keeps its prose; the generated parts sit between
`<!-- schema:NAME -->` and `<!-- /schema:NAME -->` markers.

`python -m gateway.ingest.schemadoc [--check] [docs/influx-schema.md]` rewrites (or checks)
them; tests/ingest/test_schema_doc.py runs the check.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.contract import wire as c
from gateway.contract.enums import AlarmState, EventKind, Quality, Severity
from gateway.contract.sample import Sample
from gateway.ingest.eventlabels import with_history
from gateway.ingest.schema import (
    FieldValue,
    Line,
    alarm_line,
    restamped,
    state_line,
    telemetry_lines,
)

T0 = 1_767_225_600_000_000_000
SITE, GW, ROOM = "bj-idc", "gw-1", "battery-1"
UNSET_GW, UNSET_TS = "gw-2", 86_402_000_000_000
"""A gateway whose clock was never set: its alarms and states are stamped 1970-01-02."""


def telemetry_sample() -> list[Line]:
    """A number, a boolean, a string and a null (comm error), with catalog entries."""
    catalog = {
        "th-1.temperature": c.PointMeta(device="th-1", room=ROOM, quantity="temperature",
                                        unit="°C"),
        "h2-1.lel": c.PointMeta(device="h2-1", room=ROOM, quantity="h2_lel", unit="%LEL"),
        "door-1.open": c.PointMeta(device="door-1", room=ROOM, quantity="door_open"),
    }
    batch = c.TelemetryBatch.from_samples(site=SITE, gateway=GW, seq=1, produced=T0,
                                          catalog=None, samples=[
        Sample("th-1.temperature", 24.6, T0, Quality.GOOD),
        Sample("h2-1.lel", 3.5, T0 + 1, Quality.GOOD),
        Sample("door-1.open", True, T0 + 5, Quality.GOOD),
        Sample("th-1.temperature", None, T0 + 9, Quality.COMM_ERROR),
        Sample("ups-1.mode", "line", T0 + 10, Quality.GOOD)])
    return telemetry_lines(batch, catalog)


def alarm_sample() -> list[Line]:
    """Raised by the system with a number (stamped by a synchronised clock), acknowledged by
    a user with a note (a string value), a flood start without a value, a live drill's alarm
    (tag `drill`), and an alarm of a gateway whose clock is unset, written at the ingest's
    receive time (re-stamped)."""
    common = {"site": SITE, "gateway": GW, "rule": "h2_high", "subject": "h2-1.lel",
              "severity": Severity.CRITICAL, "room": ROOM, "title": "Hydrogen high"}
    events = [
        c.AlarmEventMessage(seq=41, ts=T0 + 2_000_000_000, kind=EventKind.ALARM,
                            state=AlarmState.ACTIVE_UNACKNOWLEDGED,
                            previous_state=AlarmState.NORMAL, value=12.0, actor="system",
                            clock_synced=True, **common),  # type: ignore[arg-type]
        c.AlarmEventMessage(seq=42, ts=T0 + 9_000_000_000, kind=EventKind.ALARM,
                            state=AlarmState.ACTIVE_ACKNOWLEDGED,
                            previous_state=AlarmState.ACTIVE_UNACKNOWLEDGED, value="high",
                            actor="zhang.wei", note="fan checked", **common),  # type: ignore[arg-type]
        c.AlarmEventMessage(seq=43, ts=T0 + 9_000_000_001, kind=EventKind.FLOOD_START,
                            state=AlarmState.ACTIVE_ACKNOWLEDGED,
                            previous_state=AlarmState.ACTIVE_ACKNOWLEDGED, value=None,
                            actor="system", first_out=True, chattering=True,
                            **common),  # type: ignore[arg-type]
        c.AlarmEventMessage(seq=44, ts=T0 + 20_000_000_000, kind=EventKind.ALARM,
                            state=AlarmState.ACTIVE_UNACKNOWLEDGED,
                            previous_state=AlarmState.NORMAL, value=30.0, actor="system",
                            drill=True, **{**common, "subject": "drill:h2-1.lel"}),  # type: ignore[arg-type]
    ]
    unset = c.AlarmEventMessage(seq=3, ts=T0 + 30_000_000_000, kind=EventKind.ALARM,
                                state=AlarmState.ACTIVE_UNACKNOWLEDGED,
                                previous_state=AlarmState.NORMAL, value=25.0, actor="system",
                                clock_synced=False,
                                **{**common, "gateway": UNSET_GW})  # type: ignore[arg-type]
    return [alarm_line(e) for e in events] + restamped([alarm_line(unset)], UNSET_TS)


def state_sample() -> list[Line]:
    """A gateway's full state, and one of a gateway whose clock is unset (re-stamped)."""
    return [state_line(c.GatewayState(
        site=SITE, gateway=GW, status="online", ts=T0 + 3_000_000_000, software="1.4.0",
        config_version="7", catalog="0123456789abcdef", boot=T0 - 10**12,
        outbox=c.OutboxStatus(depth=3, bytes=100, budget=1000, oldest_age_s=2.5),
        dropped={kind: 0 for kind in c.MessageKind}, devices_online=11, devices_total=12)),
        *restamped([state_line(c.GatewayState(site=SITE, gateway=UNSET_GW, status="online",
                                              ts=T0 + 30_000_000_000))], UNSET_TS)]


def history_sample() -> list[Line]:
    return [line for line in with_history(alarm_sample()) if line.measurement == "alarm_history"]


SAMPLES: dict[str, Callable[[], list[Line]]] = {
    "telemetry": telemetry_sample, "alarm_events": alarm_sample,
    "gateway_state": state_sample, "alarm_history": history_sample}


def _type(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


def table(lines: list[Line]) -> str:
    measurements = sorted({line.measurement for line in lines})
    tags = sorted({name for line in lines for name, _ in line.tags})
    fields: dict[str, set[str]] = {}
    for line in lines:
        for name, value in line.fields:
            fields.setdefault(name, set()).add(_type(value))
    rows = ["| kind | names |", "|---|---|",
            f"| measurement | {', '.join(f'`{m}`' for m in measurements)} |",
            f"| tag | {', '.join(f'`{t}`' for t in tags)} |"]
    rows += [f"| field | `{name}` ({' or '.join(sorted(types))}) |"
             for name, types in sorted(fields.items())]
    return "\n".join(rows)


def block(name: str) -> str:
    lines = SAMPLES[name]()
    example = "\n".join(line.to_line_protocol() for line in lines)
    return f"{table(lines)}\n\n```\n{example}\n```"


_MARKED = re.compile(r"(<!-- schema:(\w+) -->)(.*?)(<!-- /schema:\2 -->)", re.S)


def render(text: str) -> str:
    """`text` with every marked block regenerated; KeyError for an unknown block name."""
    return _MARKED.sub(lambda m: f"{m.group(1)}\n{block(m.group(2))}\n{m.group(4)}", text)


def blocks(text: str) -> list[str]:
    return [m.group(2) for m in _MARKED.finditer(text)]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    path = Path(args[0]) if args else Path("docs/influx-schema.md")
    text = path.read_text(encoding="utf-8")
    new = render(text)
    if check:
        if new != text or sorted(blocks(text)) != sorted(SAMPLES):
            print(f"{path} is stale: python -m gateway.ingest.schemadoc", file=sys.stderr)
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
