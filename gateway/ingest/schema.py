"""Contract messages as InfluxDB line protocol: pure, deterministic conversion.

See docs/influx-schema.md for the schema and its reasons. Nothing here reads a clock or a
random source: the same message always gives the same lines, so a redelivered message writes
the same series at the same timestamps and collapses onto what is already stored. (An alarm
event or gateway state stamped by an unset gateway clock is written at the time the ingest
first received it, `restamped`: the ingest passes that time in, the same for a redelivery.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

from gateway.contract.enums import AlarmState, Quality
from gateway.contract.wire import (
    AlarmEventMessage,
    GatewayState,
    Message,
    PointMeta,
    TelemetryBatch,
)

ALARM_MEASUREMENT = "alarm_events"
STATE_MEASUREMENT = "gateway_state"
UNCLASSIFIED = "unclassified"
"""The measurement of points whose quantity is unknown (no catalog entry, or none set)."""
RESERVED = frozenset({ALARM_MEASUREMENT, STATE_MEASUREMENT, UNCLASSIFIED})
QUANTITY_PREFIX = "q_"
"""Prepended to a quantity that is a reserved measurement name (`q_alarm_events`)."""

FieldValue = float | int | bool | str
CatalogLookup = Callable[[str, str, str], Mapping[str, PointMeta] | None]
"""(site, gateway, catalog hash) → the catalog's points, or None if it was never seen."""


_K = TypeVar("_K")
_V = TypeVar("_V")


class UnknownCatalog(LookupError):
    """A telemetry batch names a catalog the ingest has not received (yet)."""


class Line(NamedTuple):
    """One InfluxDB point: tags and fields sorted by key, time in ns."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    time_ns: int

    def to_line_protocol(self) -> str:
        measurement, tags = self.measurement, self.tags
        # measurement and escaped tags: the same for every line of a series, whose tags tuple
        # is one object (`telemetry_lines` reuses it); the memo entry keeps that object alive,
        # so its id cannot name another tuple while the entry exists
        known = _SERIES_TEXT.get(id(tags))
        if known is not None and known[0] is tags and known[1] == measurement:
            series = known[2]
        else:
            series = measurement + "".join(f",{k}={_tag_value(v)}" for k, v in tags)
            _remember(_SERIES_TEXT, id(tags), (tags, measurement, series))
        fields = self.fields
        if len(fields) == 1:
            name, value = fields[0]
            if type(value) is float:  # the usual telemetry line: one float `value`
                return f"{series} {name}={value!r} {self.time_ns}"
            return f"{series} {name}={_field_value(value)} {self.time_ns}"
        text = ",".join(f"{k}={_field_value(v)}" for k, v in fields)
        return f"{series} {text} {self.time_ns}"


CACHE_LIMIT = 1 << 17
"""Entries per memo below: series repeat in every batch, so converting a row is mostly two
lookups. Both memos together hold ≈ 1 KB per series (≈ 130 MB when full, for 131,072 series);
a full memo is simply emptied, which costs recomputation, never a different result."""
_SERIES_TEXT: dict[int, tuple[tuple[tuple[str, str], ...], str, str]] = {}
"""id(tags) → (tags, measurement, the line's measurement and escaped tags)."""
_TELEMETRY_SERIES: dict[tuple[object, ...], tuple[str, tuple[tuple[str, str], ...]]] = {}
"""(site, gateway, point, quality[, device, room, quantity, unit]) → (measurement, tags)."""


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    if len(memo) >= CACHE_LIMIT:
        memo.clear()
    memo[key] = value


def _line(measurement: str, tags: dict[str, str | None], fields: dict[str, FieldValue | None],
          time_ns: int) -> Line:
    clean_tags = tuple(sorted((k, t) for k, v in tags.items()
                              if v is not None and (t := clean_tag(v))))
    clean_fields = tuple(sorted((k, v) for k, v in fields.items() if v is not None))
    return Line(measurement, clean_tags, clean_fields, time_ns)


# ---------------------------------------------------------------------------------- escaping

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TAG_SPECIAL = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def clean_tag(value: str) -> str:
    """A tag value InfluxDB and VictoriaMetrics store unchanged: control characters and
    backslashes (a trailing one breaks line protocol) become `_`. Free-text tags (alarm rule and
    subject) are the only ones that can contain them; ids never do. May return ""."""
    return _CONTROL.sub("_", value).replace("\\", "_")


def _tag_value(value: str) -> str:
    return value.translate(_TAG_SPECIAL)


def _field_value(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = _CONTROL.sub(" ", value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _number(value: object) -> float | None:
    """A wire value as the float field `value`: numbers, and booleans as 0.0/1.0."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def _value_fields(value: object, *, text_field: str) -> dict[str, FieldValue | None]:
    number = _number(value)
    if number is not None:
        return {"value": number}
    if value is None:
        return {"no_value": True}
    return {text_field: str(value)}  # a string, or an integer beyond the float range


# ---------------------------------------------------------------------------------- messages

def measurement_for(quantity: str | None) -> str:
    if quantity is None:
        return UNCLASSIFIED
    return QUANTITY_PREFIX + quantity if quantity in RESERVED else quantity


def device_of(point: str) -> str:
    """The device part of a point id `device.point[.flag]` (used without a catalog entry)."""
    return point.split(".", 1)[0]


def telemetry_lines(batch: TelemetryBatch, catalog: Mapping[str, PointMeta] | None) -> list[Line]:
    """One line per row. Points missing from the catalog (or without one) are written with the
    tags they have: measurement `unclassified`, device from the point id, no room or unit."""
    site, gateway, t0 = batch.site, batch.gateway, batch.t0
    memo = _TELEMETRY_SERIES
    new_line = tuple.__new__  # Line(...) without its Python-level __new__
    lines: list[Line] = []
    append = lines.append
    for point, value, dt, quality in batch.samples:
        meta = catalog.get(point) if catalog is not None else None
        key: tuple[object, ...] = (
            (site, gateway, point, quality) if meta is None else
            (site, gateway, point, quality, meta.device, meta.room, meta.quantity, meta.unit))
        series = memo.get(key)
        if series is None:
            series = _telemetry_series(site, gateway, point, quality, meta)
            _remember(memo, key, series)
        if type(value) is float and value - value == 0:  # finite: the usual row
            fields: tuple[tuple[str, FieldValue], ...] = (("value", value),)
        else:
            fields = _value_field(value, text_field="text")
        append(new_line(Line, (series[0], series[1], fields, t0 + dt)))
    return lines


def _telemetry_series(site: str, gateway: str, point: str, quality: Quality,
                      meta: PointMeta | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    tags: dict[str, str | None] = {
        "site": site, "gateway": gateway, "point": point, "quality": quality.value,
        "device": meta.device if meta is not None else device_of(point),
        "room": meta.room if meta is not None else None,
        "unit": meta.unit if meta is not None else None,
    }
    line = _line(measurement_for(meta.quantity if meta is not None else None), tags, {}, 0)
    return line.measurement, line.tags


def _value_field(value: object, *, text_field: str) -> tuple[tuple[str, FieldValue], ...]:
    """`_value_fields` of a one-field value, as `_line` sorts it."""
    ((name, field),) = _value_fields(value, text_field=text_field).items()
    assert field is not None
    return ((name, field),)


STATE_CODES: dict[AlarmState, int] = {
    AlarmState.NORMAL: 0, AlarmState.ACTIVE_UNACKNOWLEDGED: 1,
    AlarmState.ACTIVE_ACKNOWLEDGED: 2, AlarmState.RETURNED_UNACKNOWLEDGED: 3,
    AlarmState.SHELVED: 4, AlarmState.SUPPRESSED: 5, AlarmState.OUT_OF_SERVICE: 6}
"""`state_code`: the alarm's state as a number, for a store that keeps no string fields
(VictoriaMetrics drops them): its dashboards map the code back to the state's name."""


def alarm_line(event: AlarmEventMessage) -> Line:
    tags: dict[str, str | None] = {
        "site": event.site, "gateway": event.gateway, "rule": event.rule,
        "subject": event.subject, "kind": event.kind.value, "room": event.room,
        "severity": event.severity.value if event.severity is not None else None,
        "drill": "true" if event.drill else None,  # issue 12: a live drill's event
    }
    fields: dict[str, FieldValue | None] = {
        "state": event.state.value, "state_code": STATE_CODES[event.state],
        "previous_state": event.previous_state.value,
        "actor": event.actor, "seq": event.seq, "title": event.title, "note": event.note,
        "first_out": event.first_out, "chattering": event.chattering,
        "active": event.state.annunciated,
        "clock_synced": event.clock_synced,  # (absent: a gateway of before the mark)
    }
    fields.update(_value_fields(event.value, text_field="value_text"))
    return _line(ALARM_MEASUREMENT, tags, fields, event.ts)


def state_line(state: GatewayState) -> Line:
    fields: dict[str, FieldValue | None] = {
        "online": state.status == "online", "software": state.software,
        "config_version": state.config_version, "catalog": state.catalog, "boot": state.boot,
        "devices_online": state.devices_online, "devices_total": state.devices_total,
    }
    if state.outbox is not None:
        fields.update({"outbox_depth": state.outbox.depth, "outbox_bytes": state.outbox.bytes,
                       "outbox_budget": state.outbox.budget,
                       "outbox_oldest_age_s": state.outbox.oldest_age_s})
    for kind, count in state.dropped.items():
        fields[f"dropped_{kind.value}"] = count
    return _line(STATE_MEASUREMENT, {"site": state.site, "gateway": state.gateway}, fields,
                 state.ts)


def _name(field: tuple[str, FieldValue]) -> str:
    return field[0]


def restamped(lines: list[Line], gateway_ts: int | None) -> list[Line]:
    """`lines` of a message written at the ingest's receive time instead of its own (an alarm
    event or gateway state from a gateway whose clock is implausible, gateway.ingest.timecheck)
    marked so: `clock_suspect` true and the gateway's own time in `gateway_ts` (integer, ns).
    `lines` unchanged when `gateway_ts` is None (the message keeps its own time)."""
    if gateway_ts is None:
        return lines
    marks: dict[str, FieldValue] = {"clock_suspect": True, "gateway_ts": gateway_ts}
    return [line._replace(fields=tuple(sorted((*line.fields, *marks.items()), key=_name)))
            for line in lines]


def message_lines(message: Message, catalogs: CatalogLookup) -> list[Line]:
    """The lines a message writes ([] for messages that write nothing, e.g. a PointCatalog,
    which the ingest keeps instead). UnknownCatalog if a batch names a catalog never seen."""
    if isinstance(message, TelemetryBatch):
        catalog = None
        if message.catalog is not None:
            catalog = catalogs(message.site, message.gateway, message.catalog)
            if catalog is None:
                raise UnknownCatalog(f"unknown catalog {message.catalog} for "
                                     f"{message.site}/{message.gateway}")
        return telemetry_lines(message, catalog)
    if isinstance(message, AlarmEventMessage):
        return [alarm_line(message)]
    if isinstance(message, GatewayState):
        return [state_line(message)]
    return []
