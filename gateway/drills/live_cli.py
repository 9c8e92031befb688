"""`roomwarden drill --live FILE | --live --stop`: run a drill on the gateway running on this
machine, through its control socket (gateway.drills.live_control), and print its evaluation.

    roomwarden drill --live edge_rules/drills/tx_smoke_drill.yaml            # silent
    roomwarden drill --live FILE --evacuation    # outputs driven for real (sirens sound)
    roomwarden drill --live FILE --no-wait       # start it and return
    roomwarden drill --live --stop               # end the running drill now

Without `--no-wait` the command follows the drill to its end (its duration, a stop, a real
alarm in the room) and prints the evaluation; Ctrl-C stops the drill. Exit status: 0 when the
evaluation has nothing missed (or a `--no-wait` start was accepted), 1 when something was
missed or the gateway refused, 2 when the gateway could not be reached or the file read.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL = 1.0


def add_options(parser: argparse.ArgumentParser) -> None:
    """The live options of `roomwarden drill` (registered by gateway.cli)."""
    parser.add_argument("--live", action="store_true",
                        help="run the one drill FILE on the gateway running here (its control "
                             "socket), in the room the file names; see docs/drills.md")
    parser.add_argument("--evacuation", action="store_true",
                        help="with --live: drive the outputs for real (default: a silent "
                             "drill, outputs held)")
    parser.add_argument("--stop", action="store_true",
                        help="with --live: end the running drill now and print its evaluation")
    parser.add_argument("--no-wait", action="store_true",
                        help="with --live: start the drill and return (--stop or its duration "
                             "ends it)")
    parser.add_argument("--key", type=Path, default=None,
                        help="with --live: sign the start with this operator key (needed for "
                             "--evacuation when the gateway takes no unsigned local changes: "
                             "flashing.allow_local_unsigned false)")
    parser.add_argument("--actor", default=None,
                        help="with --live: who runs the drill, journalled (default: your user "
                             "name)")


def run(args: argparse.Namespace, socket_path: Path) -> int:
    """`roomwarden drill --live …` (`socket_path`: the gateway's control socket)."""
    from gateway.control import ControlError, request

    actor = args.actor or getpass.getuser()

    def ask(body: dict[str, Any]) -> dict[str, Any]:
        answers = list(request(socket_path, {"op": "drill", "actor": actor, **body},
                               timeout=30))
        return answers[-1]

    try:
        if args.stop:
            if args.paths or args.evacuation or args.no_wait:
                print("drill --live --stop takes no FILE, --evacuation or --no-wait",
                      file=sys.stderr)
                return 2
            answer = ask({"action": "stop"})
            return _finish(answer)
        if len(args.paths) != 1:
            print("drill --live runs one drill FILE", file=sys.stderr)
            return 2
        path: Path = args.paths[0]
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"drill: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        body: dict[str, Any] = {"action": "start", "file": text, "name": str(path),
                                "evacuation": bool(args.evacuation)}
        if args.key is not None:
            signed = _signed(args.key, body, socket_path)
            if signed is None:
                return 2
            body["signed"] = signed
        answer = ask(body)
        if not answer.get("ok"):
            print(f"drill refused: {answer.get('error')}", file=sys.stderr)
            return 1
        print(_banner(answer["drill"]), flush=True)
        if args.no_wait:
            return 0
        return _follow(ask)
    except ControlError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 2


def _signed(key: Path, body: dict[str, Any], socket_path: Path) -> dict[str, Any] | None:
    """The start's signature (gateway.drills.signed) for the gateway answering at
    `socket_path` (its id and site asked over the socket); None and a message if it cannot
    be made."""
    from gateway.control import request
    from gateway.drills.signed import sign_start
    from gateway.flashing.keys import KeyFileError, load_private_key

    try:
        private_key = load_private_key(key)
    except (KeyFileError, OSError) as exc:
        print(f"drill: cannot use the key {key}: {exc}", file=sys.stderr)
        return None
    status = list(request(socket_path, {"op": "status"}, timeout=10))[-1]
    if not status.get("ok"):
        print(f"drill: the gateway's status: {status.get('error')}", file=sys.stderr)
        return None
    return sign_start(body["file"], body["name"], body["evacuation"],
                      gateway=str(status["status"]["gateway"]),
                      site=str(status["status"]["site"]), private_key=private_key)


def _follow(ask: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Wait for the drill's end (Ctrl-C stops it) and print its evaluation."""
    try:
        while True:
            time.sleep(POLL)
            answer = ask({"action": "status"})
            drill = answer.get("drill") or {}
            if drill.get("finished") and answer.get("evaluation") is not None:
                return _finish(answer)
            if drill.get("finished"):  # evaluated right after the round that ended it
                continue
    except KeyboardInterrupt:
        print("stopping the drill …", file=sys.stderr)
        return _finish(ask({"action": "stop"}))


def _finish(answer: dict[str, Any]) -> int:
    from gateway.drills.live_html import drill_text

    evaluation = answer.get("evaluation")
    if evaluation is None:
        print(f"drill: {answer.get('error') or 'no evaluation'}", file=sys.stderr)
        return 1
    print(drill_text(evaluation))
    if answer.get("incident"):
        print(f"incident record: {answer['incident']} (roomwarden incident show "
              f"{answer['incident']})")
    return 0 if evaluation["ok"] else 1


def _banner(drill: dict[str, Any]) -> str:
    ends = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(drill["ends_ns"] / 1e9))
    held = "" if drill["mode"] == "evacuation" else "; outputs held"
    return (f"DRILL {drill['drill']} started in room {drill['room']} by {drill['actor']} "
            f"({drill['mode']}{held}): {drill['title']}; ends by itself at {ends}")
