"""`roomwarden incident list | show ID | export ID --html FILE`: incident records read from a
gateway's state directory, over its control socket (`--socket`), or from the central ingest's
incident store (`--central CONFIG`: the records the gateways sent; docs/incidents.md)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # each command imports what it uses: `--help` stays cheap
    from gateway.ingest.incidents import CentralIncidents
    from gateway.recorder.store import IncidentStore

PROG = "roomwarden incident"


def add_parsers(sub: Any) -> None:
    incident = sub.add_parser("incident", help="incident records: list, show, export a report")
    isub = incident.add_subparsers(title="incident commands", required=True)
    listing = isub.add_parser("list", help="stored incidents, oldest first")
    show = isub.add_parser("show", help="one incident as text: trigger, window, timeline")
    show.add_argument("id", help="the incident's id, as `incident list` prints it")
    export = isub.add_parser("export", help="one incident as a self-contained HTML report")
    export.add_argument("id", help="the incident's id, as `incident list` prints it")
    export.add_argument("--html", type=Path, required=True, metavar="FILE",
                        help="where to write the report ('-': standard output)")
    for parser, func in ((listing, cmd_list), (show, cmd_show), (export, cmd_export)):
        parser.add_argument("--state-dir", type=Path, default=None,
                            help="the gateway's state directory (default: $STATE_DIRECTORY, "
                                 "/var/lib/roomwarden if writable, else ./var)")
        parser.add_argument("--socket", type=Path, default=None, metavar="PATH",
                            help="ask the running gateway over its control socket instead "
                                 "(members of the roomwarden group may)")
        parser.add_argument("--central", type=Path, default=None, metavar="CONFIG",
                            help="read the central incident store instead: the ingest's "
                                 "config file (central.yaml) names it")
        parser.add_argument("--gateway", default=None, metavar="ID",
                            help="with --central: the gateway whose incident ID is meant "
                                 "(needed only when two gateways sent the same id)")
        parser.set_defaults(func=func)


def _ask(args: argparse.Namespace, body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """One incident request over the control socket: every answer line (the last `ok`);
    None (and a message) if it failed."""
    from gateway.control import ControlError, request

    try:
        answers = list(request(args.socket, {"op": "incident", **body}, timeout=60))
    except ControlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return None
    final = answers[-1]
    if not final.get("ok"):
        print(f"{PROG}: {final.get('error')}", file=sys.stderr)
        return None
    return answers


def _store(args: argparse.Namespace) -> IncidentStore:
    from gateway.daemon import default_state_dir
    from gateway.recorder.store import IncidentStore

    return IncidentStore((args.state_dir or default_state_dir()) / "incidents")


def _central(args: argparse.Namespace) -> CentralIncidents | None:
    """The central store the ingest's config names, read-only; None (and a message) if not."""
    from gateway.config.yamlfile import ConfigErrors
    from gateway.ingest.incidents import CentralIncidents, IncidentChunkError
    from gateway.ingest.settings import load_settings

    try:
        settings = load_settings(args.central)
        return CentralIncidents(settings.incident_store, settings.incidents, readonly=True)
    except ConfigErrors as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except (IncidentChunkError, OSError, sqlite3.Error) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    return None


def _load(args: argparse.Namespace) -> dict[str, Any] | None:
    from gateway.ingest.incidents import IncidentChunkError
    from gateway.recorder.store import IncidentError

    if args.central is not None:
        central = _central(args)
        if central is None:
            return None
        try:
            return central.load(args.id, args.gateway)
        except (IncidentChunkError, sqlite3.Error) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return None
        finally:
            central.close()
    try:
        if args.socket is not None:
            from gateway.recorder.remote import received_record

            answers = _ask(args, {"action": "get", "id": args.id})
            return None if answers is None else received_record(args.id, answers)
        from gateway.recorder.reading import load

        return load(_store(args), args.id)
    except IncidentError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return None


def cmd_list(args: argparse.Namespace) -> int:
    from gateway.recorder.remote import answer_now

    if args.central is not None:
        return _list_central(args)
    if args.socket is not None:
        answers = _ask(args, {"action": "list"})
        if answers is None:
            return 1
        rows, where = list(answers[-1]["incidents"]), f"the gateway at {args.socket}"
    else:
        store = _store(args)
        rows, where = answer_now(store, {"action": "list"})["incidents"], str(store.directory)
    if not rows:
        print(f"no incidents in {where}")
        return 0
    print(f"{'id':<44} {'status':<11} {'severity':<9} trigger")
    for row in rows:
        if "error" in row:
            print(f"{row['id']:<44} unreadable: {row['error']}")
            continue
        print(f"{row['id']:<44} {row['status']:<11} {row['severity'] or '-':<9} "
              f"{row['rule']} @ {row['subject']}" + _as_of(row, "  [", "]"))
    return 0


def _list_central(args: argparse.Namespace) -> int:
    central = _central(args)
    if central is None:
        return 1
    try:
        rows, waiting = central.summaries(), central.waiting()
    except sqlite3.Error as exc:
        print(f"{PROG}: {central.path}: {exc}", file=sys.stderr)
        return 1
    finally:
        central.close()
    if not rows:
        print(f"no incidents in {central.path}")
    else:
        print(f"{'site/gateway':<32} {'id':<44} {'status':<11} {'severity':<9} trigger")
    for row in rows:
        print(f"{row['site'] + '/' + row['gateway']:<32} {row['id']:<44} "
              f"{row['status'] or '-':<11} {row['severity'] or '-':<9} "
              f"{row['rule']} @ {row['subject']}" + ("  [drill]" if row["drill"] else "")
              + ("  [quarantined]" if row["quarantined"] else ""))
    for w in waiting:
        print(f"incomplete: {w['site']}/{w['gateway']} {w['id']}: {w['have']} of "
              f"{w['count']} chunks received")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from gateway.recorder.report import STEPPED, clock_steps, timeline, utc

    record = _load(args)
    if record is None:
        return 1
    trigger = record["trigger"]
    print(f"incident {record['id']} ({record['status']}{_as_of(record, ', ', '')})")
    print(_plain(f"  room:     {record['room']} on {record.get('gateway')} "
                 f"({record.get('site')})"))
    print(_plain(f"  trigger:  {trigger.get('title')} — {trigger['rule']} @ "
                 f"{trigger['subject']} ({trigger.get('severity')}) at "
                 f"{utc(trigger['ts'] / 1e6)} UTC"))
    print(f"  window:   {utc(record['from_ns'] / 1e6)} – {utc(record['until_ns'] / 1e6)} UTC")
    if steps := clock_steps(record):
        print(f"  clock:    {STEPPED.format('; '.join(steps))}")
    config = record.get("config") or {}
    print(f"  config:   version {config.get('version')} sha256 {config.get('sha256')}")
    samples = sum(len(p["ts"]) for p in record["points"].values())
    print(f"  recorded: {len(record['points'])} points, {samples} samples")
    print("  timeline:")
    for ts, what, item, state, actor, note in timeline(record):
        print(_plain(f"    {utc(ts / 1e6)}  {what:<7} {item}  {state}  by {actor}"
                     + (f"  — {note}" if note else "")))
    if record.get("kind") == "drill" and isinstance(record.get("drill"), dict):  # issue 12
        from gateway.drills.live_html import drill_text

        print(drill_text(record["drill"]))
    return 0


def _as_of(record: dict[str, Any], before: str, after: str) -> str:
    """An open incident's "as of <its last save read>" (gateway.recorder.reading), or ""."""
    from gateway.recorder.report import as_of

    text = as_of(record)
    return f"{before}{text}{after}" if text else ""


def _plain(line: str) -> str:
    """A line for the terminal: what is not printable (a newline, an escape sequence) in a
    note or an actor shown as its escape, so a note can neither forge a timeline line nor
    hide the ones after it (the incident audit: `ESC[8m` in an acknowledgement's note)."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in line)


def cmd_export(args: argparse.Namespace) -> int:
    from gateway.recorder.report import render
    from gateway.storage import atomic_write

    record = _load(args)
    if record is None:
        return 1
    try:
        page = render(record)
    except (KeyError, TypeError, ValueError) as exc:
        print(f"{PROG}: incident {args.id} is missing what a report needs: {exc!r}",
              file=sys.stderr)
        return 1
    if str(args.html) == "-":
        sys.stdout.write(page)
        return 0
    try:
        atomic_write(args.html, page.encode(), mode=0o640)
    except OSError as exc:
        print(f"{PROG}: cannot write {args.html}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.html}")
    return 0
