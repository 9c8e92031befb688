"""The commands that ask the running gateway over its control socket: `roomwarden status` and
`roomwarden config apply` (on the gateway itself: USB stick, SSH), and the socket the
`--socket` option every such command shares points to (the option: gateway.argparser)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.argparser import control_options
from gateway.config.report import CONFIG_HELP

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def control_path(args: argparse.Namespace) -> Path:
    from gateway.control import SOCKET_NAME, default_socket_path
    from gateway.daemon import default_state_dir

    if args.control is not None:
        return Path(args.control)
    system = Path("/run/roomwarden") / SOCKET_NAME
    if system.exists():
        return system
    return default_socket_path(default_state_dir())


def add_status_parser(sub: SubParsers) -> None:
    """Register `status` on the `roomwarden` subparsers `sub`."""
    status = sub.add_parser("status", help="the running gateway's state, for a technician: "
                            "service health and site alarms apart")
    control_options(status)
    status.add_argument("--json", action="store_true", help="the raw report as JSON")
    status.set_defaults(func=cmd_status)


def add_apply_parser(config_sub: SubParsers) -> None:
    """Register `apply` on the `roomwarden config` subparsers."""
    apply = config_sub.add_parser(
        "apply", help="apply a config to the gateway on this machine (USB stick, SSH): "
                      "checked, staged, health-checked, committed or rolled back")
    apply.add_argument("file", type=Path, help=CONFIG_HELP)
    apply.add_argument("--author", default=_local_user(),
                       help="who applies it (default: the login name)")
    apply.add_argument("--key", type=Path, default=None,
                       help="sign with this private key (needed when the gateway accepts "
                            "only signed configs)")
    apply.add_argument("--version", type=int, default=None, metavar="N",
                       help="version of the signed config (default: the running config's + 1)")
    apply.add_argument("--force", action="store_true", help="a signed downgrade")
    control_options(apply)
    apply.set_defaults(func=cmd_config_apply)


def _local_user() -> str:
    import getpass

    try:
        return f"{getpass.getuser()} (local)"
    except (KeyError, OSError):
        return "local"


def cmd_status(args: argparse.Namespace) -> int:
    from gateway.control import ControlError, request
    from gateway.ops.status_report import read_status
    from gateway.ops.status_text import render_status

    try:
        answers = list(request(control_path(args), {"op": "status"}, timeout=10))
    except ControlError as exc:
        print(f"roomwarden status: {exc}", file=sys.stderr)
        return 3
    final = answers[-1]
    if not final.get("ok"):
        print(f"roomwarden status: {final.get('error')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(final["status"], indent=2, ensure_ascii=False))
        return 0
    report = read_status(final["status"])
    import shutil

    width = shutil.get_terminal_size((80, 24)).columns  # $COLUMNS, the terminal, else 80
    print(render_status(report, color=sys.stdout.isatty(), width=width))
    return 0


def _next_version(args: argparse.Namespace) -> int | None:
    """Issue 14: like `flash`, `config apply --key` works the version out: the running
    config's + 1, asked over the control socket (None and a message if no gateway answers)."""
    from gateway.control import ControlError, request

    try:
        final = list(request(control_path(args), {"op": "status"}, timeout=10))[-1]
    except ControlError as exc:
        print(f"roomwarden config apply: {exc}", file=sys.stderr)
        return None
    if not final.get("ok"):
        print(f"roomwarden config apply: {final.get('error')}", file=sys.stderr)
        return None
    version = int(final["status"]["config_version"]) + 1
    print(f"signing as version {version} (the running config's + 1; --version N to choose)")
    return version


def cmd_config_apply(args: argparse.Namespace) -> int:
    """`roomwarden config apply FILE`: on the gateway itself (USB stick, SSH)."""
    from gateway.control import ControlError, request
    from gateway.flashing.precheck import check_gateway_config  # not at import: no YAML

    checked = check_gateway_config(args.file)  # as `roomwarden check` reports it
    if checked.loaded is None:
        print("\n".join(checked.lines), file=sys.stderr)
        print(f"roomwarden config apply: {args.file} not applied ({checked.errors} error(s))",
              file=sys.stderr)
        return 1
    for line in checked.lines[1:]:  # `check`'s warnings
        print(line, flush=True)
    text = args.file.read_text(encoding="utf-8")
    body: dict[str, object]
    if args.key is not None:
        from gateway.flashing.envelope import sign_config
        from gateway.flashing.keys import load_private_key

        gateway_id = checked.loaded.config.gateway.id
        version = args.version if args.version is not None else _next_version(args)
        if version is None:
            return 3
        envelope = sign_config(text, gateway=gateway_id, version=version,
                               author=args.author, private_key=load_private_key(args.key),
                               force=args.force)
        body = {"op": "apply", "envelope": envelope.model_dump(mode="json")}
    else:
        body = {"op": "apply", "config": text, "author": args.author}
    try:
        for answer in request(control_path(args), body):
            if "progress" in answer:
                _print_config_status(answer["progress"])
                continue
            if answer.get("error"):
                print(f"roomwarden config apply: {answer['error']}", file=sys.stderr)
            return 0 if answer.get("ok") else 1
    except ControlError as exc:
        print(f"roomwarden config apply: {exc}", file=sys.stderr)
        return 3
    return 1


def _print_config_status(status: dict[str, object]) -> None:
    line = f"{status.get('state')}"
    if status.get("version") is not None:
        line += f" v{status['version']}"
    if status.get("code"):
        line += f" [{status['code']}]"
    print(line, flush=True)
    if status.get("error"):
        for text in str(status["error"]).splitlines():
            print(f"    {text}", flush=True)
