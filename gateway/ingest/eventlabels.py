"""Alarm history for stores that drop string fields: each alarm event's strings as labels.

VictoriaMetrics keeps only numbers: written as line protocol, an `alarm_events` line loses
`state`, `actor`, `title` and `note`, so who acknowledged what would be lost centrally. With
`influx.store: victoriametrics` the ingest therefore writes every alarm event twice: the usual
`alarm_events` line (numbers and booleans: `active`, `seq`, `value`, ... for the dashboards'
state panels) and one `alarm_history` line whose *tags* are the event's tags plus its strings
(`state`, `previous_state`, `actor`, `title`, `note`, `value_text`) and whose one field is
`seq` — in VictoriaMetrics the series `alarm_history_seq{…, actor="…", note="…"}`.

Why labels (and not an event table in another database): alarm events are rare (a handful per
alarm episode, bounded by the gateway's flood handling), so one short series per event is a
small cost in a store built for label churn; the strings then live in the same database, the
same Grafana data source and the same query language as everything else, and nothing new has
to be run, backed up or secured. Label values are bounded by the contract (note ≤ 1,000
characters, well below VictoriaMetrics' label-value limit); control characters become `_`
(`schema.clean_tag`). InfluxDB keeps string fields, so `store: influxdb` writes no
`alarm_history` (it would only add one series per event to InfluxDB's index).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.ingest.schema import ALARM_MEASUREMENT, Line, clean_tag

HISTORY_MEASUREMENT = "alarm_history"
STRING_LABELS = ("state", "previous_state", "actor", "title", "note", "value_text")
"""The alarm_events string fields that become labels of `alarm_history`."""

Shaper = Callable[[list[Line]], list[Line]]


def history_line(alarm: Line) -> Line:
    """The `alarm_history` line of an `alarm_events` line: its tags and strings as tags, `seq`
    as the one field, the same timestamp (so a redelivery writes the same sample)."""
    fields = dict(alarm.fields)
    tags = dict(alarm.tags)
    for name in STRING_LABELS:
        value = fields.get(name)
        if isinstance(value, str) and (text := clean_tag(value)):
            tags[name] = text
    seq = fields.get("seq")
    return Line(HISTORY_MEASUREMENT, tuple(sorted(tags.items())),
                (("seq", seq if isinstance(seq, int) else 0),), alarm.time_ns)


def with_history(lines: list[Line]) -> list[Line]:
    """`lines` plus an `alarm_history` line after each `alarm_events` line."""
    out: list[Line] = []
    for line in lines:
        out.append(line)
        if line.measurement == ALARM_MEASUREMENT:
            out.append(history_line(line))
    return out


def _unchanged(lines: list[Line]) -> list[Line]:
    return lines


def shaper(store: str) -> Shaper:
    """What the ingest does to a message's lines before writing them to `store`."""
    return with_history if store == "victoriametrics" else _unchanged
