"""A live drill's evaluation (gateway.drills.live_eval) as people read it: as text (what
`roomwarden drill --live` and `roomwarden incident show` print) and as a section of the
incident report (gateway.recorder.report renders a record of kind `drill` with it): the
outcome, the expected alarms with their detection times, every drill alarm with its time to
acknowledge and who acknowledged it, the outputs held or written, and what was missed.
Imports nothing of the gateway: the central side renders drill records too."""

from __future__ import annotations

import html
from typing import Any


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _table(head: list[str], rows: list[list[object]]) -> str:
    cells = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="drill"><tr>{cells}</tr>{body}</table>'


def drill_section(evaluation: dict[str, Any]) -> str:
    e = evaluation
    verdict = "PASS: everything as expected" if e["ok"] else \
        f"FAIL: {len(e['missed'])} thing(s) missed"
    parts = [
        f"<h2>DRILL — evaluation ({_esc(e['mode'])} drill {_esc(e['drill'])})</h2>",
        f"<p><b>{_esc(verdict)}</b>. {_esc(e['title'])}; room {_esc(e['room'])}, started by "
        f"{_esc(e['actor'])}, ran {_s(e['duration_s'])}, ended: {_esc(e['end_reason'])}.</p>",
        "<h2>Expected</h2>",
        _table(["expectation", "window", "observed", "detection time", "result"],
               [[c["what"], f"{c['window_s'][0]:.1f}–{c['window_s'][1]:.1f} s",
                 _s(c["observed_s"]), _s(c["latency_s"]),
                 ("ok" if c["ok"] else f"MISSED {c['note']}").strip()]
                for c in e["expected"]]),
        "<h2>Drill alarms and acknowledgements</h2>",
        _table(["alarm", "severity", "active at", "acknowledged at", "by",
                "time to acknowledge", "note"],
               [[a["alarm"], a["severity"], _s(a["activated_s"]), _s(a["acknowledged_s"]),
                 a["acknowledged_by"] or "not acknowledged", _s(a["time_to_acknowledge_s"]),
                 a["note"] or ""] for a in e["alarms"]]),
        "<h2>Outputs</h2>",
        _table(["output", "what", "at", "read back"],
               [[name, f"held (silent drill): {', '.join(roles)}", "", ""]
                for name, roles in e["held"].items()]
               + [[w["output"], f"written {'on' if w['written'] else 'off'}",
                   _s(w["at_s"]), w.get("read_back") if not w.get("error") else w["error"]]
                  for w in e["output_writes"]]),
    ]
    for step in e.get("clock_steps", []):
        parts.append(f"<p><b>The wall clock stepped</b> by {step['by_s']:+.1f} s at "
                     f"{step['at_s']:.1f} s: times here are on the clock after it.</p>")
    if e["ended_by_real_alarm"]:
        parts.append(f"<p><b>A real alarm ended the drill:</b> "
                     f"{_esc(', '.join(e['ended_by_real_alarm']))}</p>")
    parts.append("<h2>Missed</h2>")
    parts.append("<ul>" + "".join(f"<li>{_esc(m)}</li>" for m in e["missed"]) + "</ul>"
                 if e["missed"] else "<p>Nothing.</p>")
    return "".join(parts)


def drill_text(evaluation: dict[str, Any]) -> str:
    """The evaluation as text (what `roomwarden drill --live` prints at the end)."""
    e = evaluation
    lines = [f"{'PASS' if e['ok'] else 'FAIL'}  live drill {e['drill']}: {e['title']}",
             f"      room {e['room']}, {e['mode']}, by {e['actor']}; {e['duration_s']:.1f} s; "
             f"ended: {e['end_reason']}"]
    for c in e["expected"]:
        seen = "never" if c["observed_s"] is None else f"at {c['observed_s']:7.1f} s"
        latency = "" if c["latency_s"] is None else f"  detection {c['latency_s']:5.1f} s"
        low, high = c["window_s"]
        lines.append(f"  {'ok  ' if c['ok'] else 'MISS'} {c['what']:<52} window {low:6.1f}.."
                     f"{high:6.1f} s  {seen}{latency} {c['note']}")
    for a in e["alarms"]:
        ack = ("not acknowledged" if a["acknowledged_s"] is None else
               f"acknowledged at {a['acknowledged_s']:.1f} s by {a['acknowledged_by']} after "
               f"{a['time_to_acknowledge_s']:.1f} s")
        lines.append(f"  alarm {a['alarm']} ({a['severity']}) active at "
                     f"{a['activated_s']:.1f} s, {ack}")
    for name, roles in e["held"].items():
        lines.append(f"  held (silent drill): {', '.join(roles)} for {name}")
    for w in e["output_writes"]:
        lines.append(f"  output {w['output']} written {'on' if w['written'] else 'off'} at "
                     f"{w['at_s']:.1f} s, read back {w.get('read_back')}"
                     + (f", error {w['error']}" if w.get("error") else ""))
    for item in e["ended_by_real_alarm"]:
        lines.append(f"  REAL ALARM {item}: ended the drill")
    lines.extend(f"  clock stepped by {step['by_s']:+.1f} s at {step['at_s']:.1f} s (times "
                 "on the clock after it)" for step in e.get("clock_steps", []))
    lines.extend(f"  missed: {m}" for m in e["missed"])
    return "\n".join(lines)
