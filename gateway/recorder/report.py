"""One incident record (docs/incidents.md) as one self-contained HTML page: a summary, inline
SVG plots of the room's hazard signals (the points its rules read) with their thresholds, the
alarm bands, the acknowledgements and the output states, and a timeline table. No scripts, no
external assets; prints to PDF from a browser (one plot per block, no page break inside)."""

from __future__ import annotations

import html
import math
import time
from typing import Any

from gateway.recorder.decimate import kept
from gateway.records import dataclass

MAX_PLOTS = 24
WIDTH, HEIGHT = 900, 170
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 14, 40
_ACTIVE = ("active_unacknowledged", "active_acknowledged")
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2} .meta td:first-child{width:160px;color:#555}
figure{margin:8px 0;break-inside:avoid;page-break-inside:avoid}
figcaption{font-size:13px;font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#333}
.sev-critical{color:#b00020;font-weight:600} .sev-major{color:#c25400;font-weight:600}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.sw{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
@media print{body{margin:8mm}}
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def utc(ms: float, with_date: bool = True) -> str:
    text = time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S",
                         time.gmtime(ms / 1000))
    return f"{text}.{int(ms % 1000):03d}" if with_date else text


def as_of(record: dict[str, Any]) -> str:
    """"as of HH:MM:SS UTC (its last save; it is still open)" for an open incident read
    through its progress file (gateway.recorder.reading: `as_of_ns`), else ""."""
    at = record.get("as_of_ns")
    if record.get("status") != "open" or not isinstance(at, int):
        return ""
    return f"as of {utc(at / 1e6, with_date=False)} UTC (its last save; it is still open)"


def clock_steps(record: dict[str, Any]) -> list[str]:
    """The record's wall-clock steps as text (gateway/recorder/clockstep.py): "+3600.000 s at
    2026-12-05 18:00:00.000 UTC"; entries not of two integers are left out (a record is
    read, not trusted)."""
    steps = record.get("clock_steps")
    return [f"{step['by_ns'] / 1e9:+.3f} s at {utc(step['at_ns'] / 1e6)} UTC"
            for step in (steps if isinstance(steps, list) else [])
            if isinstance(step, dict) and all(type(step.get(k)) is int
                                              for k in ("at_ns", "by_ns"))]


STEPPED = ("the wall clock stepped {}: what the gateway recorded before a step is moved by it "
           "(the journal and the central database keep those events and samples as stamped)")


@dataclass
class Band:
    """An alarm's active span (ms), for every plot of the room."""

    rule: str
    subject: str
    severity: str | None
    start_ms: int
    end_ms: int


def alarm_bands(record: dict[str, Any]) -> list[Band]:
    """Active spans of each alarm of the record, from its events (still active: to the end)."""
    end_of_window = record["until_ns"] // 1_000_000
    bands: list[Band] = []
    open_: dict[tuple[str, str], Band] = {}
    for e in sorted(record["events"], key=lambda e: e["seq"]):
        if e["kind"] != "alarm":
            continue
        key, ts = (e["rule"], e["subject"]), e["ts"] // 1_000_000
        if e["state"] in _ACTIVE and key not in open_:
            open_[key] = Band(e["rule"], e["subject"], e["severity"], ts, end_of_window)
            bands.append(open_[key])
        elif e["state"] not in _ACTIVE and key in open_:
            open_.pop(key).end_ms = ts
    return bands


def hazard_points(record: dict[str, Any]) -> list[str]:
    """The points the room's rules read (those with data), then nothing else: the signals."""
    seen: list[str] = []
    for rule in record["rules"]:
        for point in rule["points"]:
            data = record["points"].get(point)
            if point not in seen and data is not None and data["ts"]:
                seen.append(point)
    return seen[:MAX_PLOTS]


def thresholds_of(record: dict[str, Any], point: str) -> list[tuple[str, float]]:
    found: dict[tuple[str, float], None] = {}
    for rule in record["rules"]:
        if point in rule["points"]:
            for name, value in rule["thresholds"].items():
                found[(f"{rule['rule'].split('.')[-1]} {name}", float(value))] = None
    return list(found)


class Axes:
    def __init__(self, t0: float, t1: float, lo: float, hi: float) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        pad = (hi - lo) * 0.08
        self.lo, self.hi = lo - pad, hi + pad

    def x(self, ms: float) -> float:
        return LEFT + (ms - self.t0) / (self.t1 - self.t0) * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return TOP + (self.hi - v) / (self.hi - self.lo) * (HEIGHT - TOP - BOTTOM)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(step)) if step > 0 else 1
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= step),
               default=magnitude)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def plot(record: dict[str, Any], point: str, bands: list[Band], acks: list[dict[str, Any]],
         t0: float, t1: float) -> str:
    data = record["points"][point]
    values = [_number(v) for v in data["v"]]
    numbers = [v for v in values if v is not None]
    boolean = all(isinstance(v, bool) for v in data["v"] if v is not None)
    levels = thresholds_of(record, point)
    lo = min(numbers + [v for _, v in levels], default=0.0)
    hi = max(numbers + [v for _, v in levels], default=1.0)
    ax = Axes(t0, t1, 0.0 if boolean else lo, 1.0 if boolean else hi)
    unit = data.get("unit") or ""
    y_label = "state (0 = false, 1 = true)" if boolean else \
        f"{data.get('quantity') or 'value'}{f' ({unit})' if unit else ''}"
    parts = [f'<svg class="plot" data-point="{esc(point)}" data-t0="{t0:.0f}" '
             f'data-t1="{t1:.0f}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="{esc(point)}">']
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    for band in bands:
        x0, x1 = ax.x(max(band.start_ms, t0)), ax.x(min(band.end_ms, t1))
        colour = "#f8b4b4" if band.severity == "critical" else "#fbd38d"
        parts.append(f'<rect class="alarm-band" data-rule="{esc(band.rule)}" '
                     f'data-from="{band.start_ms}" data-until="{band.end_ms}" x="{x0:.1f}" '
                     f'y="{TOP}" width="{max(x1 - x0, 1):.1f}" height="{bottom - TOP}" '
                     f'fill="{colour}" fill-opacity="0.6"><title>{esc(band.rule)} '
                     f'{esc(band.subject)}</title></rect>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" '
                 f'fill="none" stroke="#888"/>')
    for v in _ticks(ax.lo, ax.hi, 4):
        y = ax.y(v)
        parts.append(f'<line x1="{LEFT - 4}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eee"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{v:g}</text>')
    for s in _ticks(t0 / 1000, t1 / 1000, 6):
        x = ax.x(s * 1000)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" '
                     f'stroke="#888"/><text x="{x:.1f}" y="{bottom + 15}" '
                     f'text-anchor="middle">{utc(s * 1000, with_date=False)}</text>')
    for name, level in levels:
        y = ax.y(level)
        parts.append(f'<line class="threshold" x1="{LEFT}" x2="{right}" y1="{y:.1f}" '
                     f'y2="{y:.1f}" stroke="#b00020" stroke-dasharray="6 4"/>'
                     f'<text x="{right - 4}" y="{y - 3:.1f}" text-anchor="end" '
                     f'fill="#b00020">{esc(name)} {level:g}</text>')
    path: list[str] = []
    previous_y: float | None = None
    stamps, qualities = data["ts"], data["q"]
    if len(stamps) != len(values) or len(qualities) != len(values):
        raise ValueError(f"{point}: its ts, v and q differ in length")
    for i in kept(stamps, values, [q == "g" for q in qualities], t0, t1, WIDTH - LEFT - RIGHT):
        ts, number, q = stamps[i], values[i], qualities[i]
        if number is None or q != "g":
            previous_y = None
            continue
        x, y = ax.x(ts), ax.y(number)
        if previous_y is None:
            path.append(f"M{x:.1f},{y:.1f}")
        elif boolean:
            path.append(f"H{x:.1f}V{y:.1f}")
        else:
            path.append(f"L{x:.1f},{y:.1f}")
        previous_y = y
    parts.append(f'<path class="signal" d="{" ".join(path)}" fill="none" stroke="#1f4e9c" '
                 f'stroke-width="1.5"/>')
    bad = [ax.x(ts) for ts, q in zip(data["ts"], data["q"], strict=True) if q != "g"]
    parts += [f'<line class="bad-quality" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom - 6}" '
              f'y2="{bottom}" stroke="#777"/>' for x in bad[:2000]]
    for ack in acks:
        x = ax.x(ack["ts"] // 1_000_000)
        parts.append(f'<line class="ack" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{bottom}" '
                     f'stroke="#1b7f3b" stroke-width="2"/><text x="{x + 3:.1f}" '
                     f'y="{TOP + 11}" fill="#1b7f3b">ack {esc(ack["actor"])}</text>')
    parts.append(f'<text class="axis-label" x="{(LEFT + right) / 2:.0f}" y="{HEIGHT - 4}" '
                 f'text-anchor="middle">time (UTC)</text><text class="axis-label" '
                 f'transform="translate(14 {(TOP + bottom) / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle">{esc(y_label)}</text></svg>')
    return "".join(parts)


def output_strip(record: dict[str, Any], t0: float, t1: float) -> str:
    """Each served output's commanded and read-back state over the window."""
    outputs = list(record["outputs_served"])
    if not outputs:
        return "<p>No outputs serve this room.</p>"
    row = 26
    height = TOP + row * len(outputs) + BOTTOM
    ax = Axes(t0, t1, 0, 1)
    parts = [f'<svg class="plot outputs" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
             f'height="{height}" role="img" aria-label="outputs">']
    for i, output in enumerate(outputs):
        y = TOP + i * row
        parts.append(f'<text x="{LEFT - 6}" y="{y + 16}" text-anchor="end">{esc(output)}</text>'
                     f'<rect x="{LEFT}" y="{y + 3}" width="{WIDTH - LEFT - RIGHT}" '
                     f'height="{row - 6}" fill="#f4f4f4"/>')
        changes = [c for c in record["output_changes"] if c["output"] == output
                   and not c["pending"]]
        for n, c in enumerate(changes):
            if not c["read_back"]:
                continue
            start = max(c["ts"] / 1e6, t0)
            end = changes[n + 1]["ts"] / 1e6 if n + 1 < len(changes) else t1
            parts.append(f'<rect class="output-on" data-output="{esc(output)}" '
                         f'x="{ax.x(start):.1f}" y="{y + 3}" '
                         f'width="{max(ax.x(min(end, t1)) - ax.x(start), 1):.1f}" '
                         f'height="{row - 6}" fill="#2f855a"><title>{esc(output)} on (read '
                         f'back)</title></rect>')
    bottom = height - BOTTOM
    for s in _ticks(t0 / 1000, t1 / 1000, 6):
        x = ax.x(s * 1000)
        parts.append(f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">'
                     f'{utc(s * 1000, with_date=False)}</text>')
    parts.append(f'<text class="axis-label" x="{(WIDTH + LEFT) / 2:.0f}" y="{height - 4}" '
                 f'text-anchor="middle">time (UTC) — green: on, as read back</text></svg>')
    return "".join(parts)


def timeline(record: dict[str, Any]) -> list[tuple[int, str, str, str, str, str]]:
    """(ts ns, what, item, state, actor, note) of every event and output change, in order."""
    rows = [(e["ts"], "alarm" if e["kind"] == "alarm" else e["kind"],
             f"{e['rule']} @ {e['subject']}", f"{e['state']} ({e['severity'] or '-'})",
             e["actor"], e["note"] or e["title"] or "") for e in record["events"]]
    for c in record["output_changes"]:
        def word(on: object) -> str:
            return "-" if on is None else ("on" if on else "off")

        if c["kind"] == "command":
            state, note = f"commanded {word(c['written'])}", "to be written"
        else:
            state = f"wrote {word(c['written'])}, read back {word(c['read_back'])}"
            note = c["error"] or f"write #{c['writes']}"
        rows.append((c["ts"], "output", c["output"], state, "gateway", note))
    return sorted(rows, key=lambda r: r[0])


def _drill(record: dict[str, Any]) -> list[str]:
    """A live drill's record (kind `drill`): its evaluation (gateway.drills.live_html)."""
    if record.get("kind") != "drill" or not isinstance(record.get("drill"), dict):
        return []
    from gateway.drills.live_html import drill_section

    return [drill_section(record["drill"])]


def render(record: dict[str, Any]) -> str:
    """The whole page."""
    t0, t1 = record["from_ns"] / 1e6, record["until_ns"] / 1e6
    bands = alarm_bands(record)
    acks = [e for e in record["events"] if e["state"] == "active_acknowledged"]
    trigger = record["trigger"]
    config = record.get("config") or {}
    meta = [("Incident", record["id"]),
            ("Status", record["status"] + (f", {text}" if (text := as_of(record)) else "")),
            ("Gateway / site", f"{record.get('gateway')} / {record.get('site')}"),
            ("Room", record["room"]),
            ("Trigger", f"{trigger['title']} — {trigger['rule']} @ {trigger['subject']} "
                        f"({trigger['severity']}), value {trigger['value']}"),
            ("Triggered at", f"{utc(trigger['ts'] / 1e6)} UTC"),
            ("Window", f"{utc(t0)} – {utc(t1)} UTC"),
            *([("Clock", STEPPED.format("; ".join(steps)))] if (steps := clock_steps(record))
              else []),
            ("Config", f"version {config.get('version')}, sha256 "
                       f"{str(config.get('sha256'))[:16]}…, {config.get('file')}")]
    health = record.get("health", {}).get("at_trigger", {})
    for bus in health.get("buses", []):
        meta.append((f"Bus {bus.get('id')} at trigger",
                     f"{bus.get('devices_online')}/{bus.get('devices_total')} devices "
                     f"online, {bus.get('polls')} polls, {bus.get('overruns')} overruns"))
    meta.append(("Uplink at trigger", f"{health.get('uplink', '-')}"))
    body = [f"<h1>Incident {esc(record['id'])}</h1>",
            '<table class="meta">' + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>"
                                            for k, v in meta) + "</table>",
            *_drill(record),  # issue 12: a live drill's evaluation
            "<h2>Signals</h2>",
            '<p class="legend"><span><i class="sw" style="background:#f8b4b4"></i>critical '
            'alarm active</span><span><i class="sw" style="background:#fbd38d"></i>other '
            'alarm active</span><span><i class="sw" style="background:#b00020"></i>threshold'
            '</span><span><i class="sw" style="background:#1b7f3b"></i>acknowledged</span>'
            '<span><i class="sw" style="background:#777"></i>sample not good</span></p>']
    points = hazard_points(record)
    for point in points:
        data = record["points"][point]
        body.append(f"<figure><figcaption>{esc(point)} — {esc(data.get('quantity'))}"
                    f"</figcaption>{plot(record, point, bands, acks, t0, t1)}</figure>")
    if not points:
        body.append("<p>No recorded signal of this room's rules.</p>")
    body += ["<h2>Outputs</h2>", f"<figure>{output_strip(record, t0, t1)}</figure>",
             "<h2>Timeline</h2>", '<table class="timeline"><tr><th>time (UTC)</th>'
             "<th>what</th><th>alarm / output</th><th>state</th><th>by</th><th>note</th></tr>"]
    for ts, what, item, state, actor, note in timeline(record):
        severity = next((f" sev-{s}" for s in ("critical", "major") if f"({s})" in state), "")
        body.append(f'<tr class="{esc(what)}{severity}"><td>{esc(utc(ts / 1e6))}</td>'
                    f"<td>{esc(what)}</td><td>{esc(item)}</td><td>{esc(state)}</td>"
                    f"<td>{esc(actor)}</td><td>{esc(note)}</td></tr>")
    body.append("</table>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Incident {esc(record['id'])}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>")
