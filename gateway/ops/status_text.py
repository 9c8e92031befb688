"""`roomwarden status`, its terminal view: `render_status(report, color)` prints a
`gateway.ops.status_report.StatusReport` compactly, at most `WIDTH` columns, like
`systemctl status`.

The header keeps **Service** (the gateway itself) and **Site** (are the rooms in alarm: `ALARM —
1 critical active, flood`) apart; it never prints a bare "ok" beside an active critical alarm or
a flood.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.ops.health import Level, SiteLevel
from gateway.ops.status_report import StatusReport
from gateway.uplink.status import missed_text

WIDTH = 80
"""Default line width, the longest line `render_status` prints (in terminal columns; CJK
characters count 2). Issue 14: fits an 80-column terminal; `render_status(width=…)` uses a
wider one when the terminal has it."""
REASONS_SHOWN = 3
"""Reasons listed under an output that is on (the alarms keeping it on); past that a count."""
MAX_DEVICES_SHOWN = 60
MAX_ALARMS_SHOWN = 30

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_LEVEL_COLOR = {Level.OK: "green", Level.DEGRADED: "yellow", Level.ALARM: "red",
                Level.FAILING: "red"}
_SITE_COLOR = {SiteLevel.NORMAL: "green", SiteLevel.ACTIVE: "yellow", SiteLevel.ALARM: "red"}
SERVICE_MEANS = "(the gateway itself: polling, rules, outputs, uplink)"
_SEVERITY_COLOR = {"critical": "red", "major": "red", "minor": "yellow", "warning": "cyan"}
_STATE_TEXT = {
    "active_unacknowledged": "active, unacked",
    "active_acknowledged": "active, acked",
    "returned_unacknowledged": "returned, unacked",
    "shelved": "shelved",
    "suppressed": "suppressed",
    "out_of_service": "out of service",
}
_HIDDEN_TEXT = {"latched": ", latched", "active": ", active"}
"""After a shelved or suppressed alarm's state when it still drives its protective outputs
(`AlarmLine.hidden`): `shelved, latched` — it returns unacknowledged when unshelved."""


def display_width(text: str) -> int:
    """Terminal columns `text` takes (ANSI colours take none; wide CJK characters two)."""
    text = _ANSI.sub("", text)
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` columns, with … when cut (no ANSI codes in `text`)."""
    text = " ".join(text.split())  # no newlines or tabs from error messages
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        w = display_width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int) -> str:
    text = _fit(text, width)
    return text + " " * (width - display_width(text))


def duration(seconds: float) -> str:
    """`12 s`, `3m 02s`, `2h 13m`, `3d 04h`."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class _Painter:
    def __init__(self, color: bool, width: int = WIDTH) -> None:
        self.color = color
        self.width = width

    def __call__(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def render_status(report: StatusReport, color: bool, width: int = WIDTH) -> str:
    """A compact terminal view of `report`, every line at most `width` columns (60 … 200)."""
    paint = _Painter(color, max(60, min(200, width)))
    lines: list[str] = []
    lines.extend(_header(report, paint))
    lines.extend(_buses(report, paint))
    lines.extend(_alarms(report, paint))
    lines.extend(_outputs(report, paint))
    lines.extend(_uplink(report, paint))
    return "\n".join(lines) + "\n"


_Part = tuple[str, int | None, tuple[str, ...]]
"""(text, column width or None for the rest of the line, styles)"""


def _line(paint: _Painter, indent: int, parts: Iterable[_Part]) -> str:
    """One line of (text, column width or None for the rest, styles) parts, fitted to WIDTH."""
    out = [" " * indent]
    used = indent
    for text, width, styles in parts:
        room = paint.width - used
        if room <= 0:
            break
        piece = _fit(text, room) if width is None or width >= room else _pad(text, width)
        core = piece.rstrip()  # padding stays outside the colour codes
        out.append((paint(core, *styles) if core else "") + piece[len(core):])
        used += display_width(piece)
    return "".join(out).rstrip()


def _header(r: StatusReport, paint: _Painter) -> list[str]:
    level = r.health.status  # overall: never ok during a site alarm
    service = r.health.service or level
    site = r.health.site
    dot = "●" if level is Level.OK else "▲" if level is Level.DEGRADED else "✗"
    lines = [_line(paint, 0, [
        (dot + " ", 2, (_LEVEL_COLOR[level],)),
        (f"{r.gateway} ({r.site})", None, ("bold",)),
    ])]
    if r.name:
        lines.append(_line(paint, 2, [(r.name, None, ("dim",))]))
    service_text = service.value.upper() if service is not Level.OK else "ok"
    lines.append(_line(paint, 2, [
        ("Service: ", 9, ()),
        (service_text, len(service_text) + 2, (_LEVEL_COLOR[service], "bold")),
        (f"up {duration(r.uptime_s)} · {r.evaluations} rule evaluations", None, ()),
    ]))
    lines.append(_line(paint, 2, [("", 9, ()), (SERVICE_MEANS, None, ("dim",))]))
    if site is None:  # a report from a gateway that does not judge its site
        site_text, style = ("ALARM FLOOD" if r.flood else "unknown"), "red" if r.flood else "dim"
    else:
        site_text, style = site.detail, _SITE_COLOR[site.status]
    lines.append(_line(paint, 2, [
        ("Site:    ", 9, ()), (site_text, None, (style, "bold")),
    ]))
    lines.append(_line(paint, 2, [
        ("Version: ", 9, ()),
        (f"roomwarden {r.software} · config v{r.config_version} "
         f"sha256 {r.config_sha256[:12]}", None, ()),
    ]))
    for name, check in r.health.checks.items():
        if check.status is not Level.OK:
            lines.append(_line(paint, 2, [
                (f"{name}:", max(9, len(name) + 2), ()),  # rule_parameters: whole
                (check.status.value, 10, (_LEVEL_COLOR[check.status],)),
                (check.detail, None, ()),
            ]))
    return lines


def _buses(r: StatusReport, paint: _Painter) -> list[str]:
    online = sum(b.devices_online for b in r.buses)
    total = sum(b.devices_total for b in r.buses)
    lines = ["", _line(paint, 0, [(f"Buses ({online}/{total} devices online)", None,
                                   ("bold",))])]
    id_width = max([10, *(display_width(d.id) + 1 for b in r.buses for d in b.devices)])
    id_width = min(id_width, 24)
    shown = 0
    for bus in r.buses:
        stalled = bus.stalled
        lines.append(_line(paint, 2, [
            (bus.id, max(12, min(24, display_width(bus.id) + 2)), ("bold",)),
            (bus.type, 12, ()),
            (f"{bus.devices_online}/{bus.devices_total} online", 12,
             ("green",) if bus.devices_online == bus.devices_total else ("yellow",)),
            (f"{bus.polls} polls · {bus.overruns} overruns · last poll {bus.last_poll_ms:g} ms"
             + (f" · STALLED {duration(bus.progress_age_s)}" if stalled else "")
             + (f" · LINK NOT OPEN: {bus.link_error}" if bus.link_open is False else ""),
             None, ("red",) if stalled or bus.link_open is False else ()),
        ]))
        for d in bus.devices:
            shown += 1
            if shown > MAX_DEVICES_SHOWN:
                continue
            if d.online is None:
                mark, state, style = "○", "waiting", "dim"
            elif d.online:
                mark, state, style = "●", "online", "green"
            else:
                mark, state, style = "✗", "OFFLINE", "red"
            seen = ("never answered" if d.last_success_age_s is None
                    else f"ok {duration(d.last_success_age_s)} ago")
            tail: list[_Part] = [(seen, 16, ())]  # issue 14: room for the error at 80
            if d.last_error and not d.online:
                tail.append((d.last_error, None, ("dim",)))
            lines.append(_line(paint, 4, [
                (mark + " ", 2, (style,)), (d.id, id_width, ()), (state, 9, (style,)),
                (f"{d.polls} polls", 11, ()),
                (f"{d.failures} failed", 11, ("yellow",) if d.failures else ()), *tail,
            ]))
    if shown > MAX_DEVICES_SHOWN:
        lines.append(_line(paint, 4, [(f"… and {shown - MAX_DEVICES_SHOWN} more devices",
                                       None, ("dim",))]))
    return lines


def _alarms(r: StatusReport, paint: _Painter) -> list[str]:
    head = f"Alarms ({len(r.alarms)} active)" if r.alarms else "Alarms: none active"
    lines = ["", _line(paint, 0, [(head, None, ("bold",))])]
    zone = _zone(r.timezone)
    for alarm in r.alarms[:MAX_ALARMS_SHOWN]:
        since = "—"
        if alarm.since_ns is not None:
            at = datetime.fromtimestamp(alarm.since_ns / 1e9, zone)
            age = duration((r.generated_ns - alarm.since_ns) / 1e9)
            since = f"since {at:%m-%d %H:%M:%S %Z} ({age})"
        where = alarm.subject + (f" @{alarm.room}" if alarm.room else "")
        lines.append(_line(paint, 2, [
            (alarm.severity.upper(), 10, (_SEVERITY_COLOR.get(alarm.severity, "bold"), "bold")),
            (_STATE_TEXT.get(alarm.state, alarm.state) + _HIDDEN_TEXT.get(alarm.hidden or "", ""),
             19, ()),
            (alarm.rule + (" (first out)" if alarm.first_out else ""), None, ()),
        ]))
        # issue 14: the time and age come first on their own line, never cut by the width
        lines.append(_line(paint, 12, [(f"{since} · {where}", None, ())]))
        note = f"by {alarm.acked_by}" if alarm.acked_by else ""
        lines.append(_line(paint, 12, [(alarm.title + (f" · acked {note}" if note else ""),
                                        None, ("dim",))]))
    if len(r.alarms) > MAX_ALARMS_SHOWN:
        lines.append(_line(paint, 2, [(f"… and {len(r.alarms) - MAX_ALARMS_SHOWN} more",
                                       None, ("dim",))]))
    return lines


def _onoff(value: bool | None) -> str:
    return "—" if value is None else "on" if value else "off"


def _outputs(r: StatusReport, paint: _Painter) -> list[str]:
    if not r.outputs:
        return ["", _line(paint, 0, [("Outputs: none configured", None, ("bold",))])]
    lines = ["", _line(paint, 0, [("Outputs", None, ("bold",))])]
    for o in r.outputs:
        mismatch = o.confirmed is not None and o.confirmed != o.wanted
        parts: list[_Part] = [
            (o.id, 16, ()), (o.role, 13, ()),
            (f"wanted {_onoff(o.wanted)}", 12, ("bold",) if o.wanted else ()),
            (f"written {_onoff(o.commanded)}", 13, ()),
            (f"confirmed {_onoff(o.confirmed)}", 15, ("yellow",) if mismatch else ()),
        ]
        if o.failed:
            parts.append((f"FAILED ({o.failures}): {o.last_error}", None, ("red",)))
        elif o.blocked_by:
            why = f" — {o.block_reason}" if o.block_reason else ""
            parts.append((f"blocked by {o.blocked_by}{why}", None, ("yellow",)))
        elif o.failures:
            parts.append((f"{o.failures} failed writes", None, ("dim",)))
        lines.append(_line(paint, 2, parts))
        if o.wanted and not o.blocked_by:  # why it is on, one line each (a shelved alarm's too)
            shown = o.reasons[:REASONS_SHOWN]
            more = len(o.reasons) - len(shown)
            lines.extend(_line(paint, 4, [(f"for {why}", None, ("dim",))]) for why in shown)
            if more:
                lines.append(_line(paint, 4, [(f"and {more} more", None, ("dim",))]))
    return lines


def _uplink(r: StatusReport, paint: _Painter) -> list[str]:
    u = r.uplink
    if u is None:
        return ["", _line(paint, 0, [("Uplink: not configured", None, ("bold",))])]
    oldest = f", oldest {duration(u.oldest_age_s)}" if u.oldest_age_s else ""
    dropped = sum(u.dropped.values())
    drop_text = (f"dropped {dropped} ("
                 + ", ".join(f"{k} {n}" for k, n in u.dropped.items() if n) + ")"
                 if dropped else "dropped 0")
    clean = u.connected and not u.refused
    lines = ["", _line(paint, 0, [
        ("Uplink: ", 8, ("bold",)),
        ("connected" if clean else "NOT SUBSCRIBED" if u.connected else "DISCONNECTED", 16,
         ("green",) if clean else ("yellow",)),
        (f"outbox {u.outbox_depth} ({_size(u.outbox_bytes)} of {_size(u.outbox_budget)}"
         f"{oldest}) · published {u.published} · {drop_text}", None, ()),
    ])]
    if u.connected and u.refused:  # the broker refused a subscription: what does not arrive
        lines.extend(_line(paint, 2, [(f"refused: {topic} ({why})", None, ("yellow",))])
                     for topic, why in u.refused.items())
        lines.append(_line(paint, 2, [(missed_text(u.refused), None, ("dim",))]))
    if u.last_error and not u.connected:
        lines.append(_line(paint, 2, [("last error: " + u.last_error, None, ("dim",))]))
    return lines
