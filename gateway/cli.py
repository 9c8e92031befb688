"""The `roomwarden` command (also `python -m gateway`)."""

# Its parser and the commands of no feature package (check, schema, drill, passwd, demo); the
# others register their own: gateway.run_cli (run), gateway.field.cli (plan),
# gateway.control_cli (status, config apply), gateway.sim.cli (simulate, simctl),
# gateway.flashing.cli, gateway.operator.cli, gateway.recorder.cli. `run` reads its command
# line without argparse (gateway.run_cli.parse_run), or else with a parser of its own command
# alone, so a running gateway never imports the others' modules nor argparse (issue 15).
# (The docstring is `roomwarden --help`'s description.)

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.closed_pipe import run_command
from gateway.run_cli import parse_run

if TYPE_CHECKING:  # argparse is imported where a parser is built: never by `run` (issue 15)
    import argparse

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def main(argv: Sequence[str] | None = None) -> int:
    """Every command; one whose stdout is closed under it (`roomwarden plan … | head`) ends
    quietly with 141, no traceback (gateway.closed_pipe.run_command)."""
    return run_command(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["ingest"]:  # the central service has its own options
        from gateway.ingest.cli import main as ingest_main

        return ingest_main(args_list[1:])
    args = parse_arguments(args_list)
    if args is None:
        return 2
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log outcomes ourselves
    result: int = args.func(args)
    return result


def parse_arguments(argv: list[str]) -> argparse.Namespace | SimpleNamespace | None:
    """The command line's values, or None (the help printed) if it names no command. `run …`
    is read without argparse if it can be (gateway.run_cli.parse_run: argparse and gettext
    stay out of a running gateway, 0.3 MiB), else parsed by the `run` command's parser
    alone, so a running gateway never imports the other commands' modules (~0.14 MiB, issue
    15); what that parser does not know, every command's parser reports, as before. No parser
    is kept while a command runs."""
    if argv[:1] == ["run"] and (run := parse_run(argv[1:])) is not None:
        return run
    parser = build_parser(run_only=argv[:1] == ["run"])
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser = build_parser()
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return None
    return args


def build_parser(*, run_only: bool = False) -> argparse.ArgumentParser:
    """Every command's parser; with `run_only`, the `run` command's alone."""
    from gateway.argparser import Parser
    from gateway.run_cli import add_run_parser

    parser: argparse.ArgumentParser = Parser(prog="roomwarden", description=__doc__)
    parser.add_argument("--version", action="version", version=f"roomwarden {__version__}")
    sub = parser.add_subparsers(title="commands")
    if run_only:
        add_run_parser(sub)
    else:
        _add_commands(sub)
    _describe(parser)
    return parser


def _add_commands(sub: SubParsers) -> None:
    # the other commands' modules: imported for their parsers here, never by `run`
    from gateway.argparser import control_options
    from gateway.config.duration_parse import duration_arg
    from gateway.control_cli import add_apply_parser, add_status_parser
    from gateway.drills.live_cli import add_options as add_live_drill_options  # issue 12
    from gateway.field.cli import add_plan_parser
    from gateway.flashing.cli import add_parsers as add_flashing_parsers
    from gateway.operator.cli import add_parsers as add_operator_parsers  # issue 9
    from gateway.recorder.cli import add_parsers as add_incident_parsers  # issue 12
    from gateway.run_cli import add_run_parser
    from gateway.sim.cli import add_parsers as add_simulator_parsers

    check = sub.add_parser("check", help="validate gateway configs and device profiles")
    check.add_argument("paths", nargs="+", type=Path,
                       help="config files, profile files, or directories of them")
    check.set_defaults(func=cmd_check)

    schema = sub.add_parser("schema", help="print the JSON Schema for editors")
    schema.add_argument("--profile", action="store_true",
                        help="the schema of device profiles instead of gateway configs")
    schema.set_defaults(func=cmd_schema)

    add_plan_parser(sub)
    add_run_parser(sub)
    add_status_parser(sub)
    add_simulator_parsers(sub)  # simulate, simctl

    drill = sub.add_parser("drill", help="run scripted drills against the simulated site, "
                                         "or one live on the running gateway (--live)")
    drill.add_argument("paths", nargs="*", type=Path, help="drill files or directories")
    add_live_drill_options(drill)
    control_options(drill)
    drill.set_defaults(func=cmd_drill)

    passwd = sub.add_parser("passwd", help="print a password hash for a panel user (reads "
                                           "the password from the terminal or stdin)")
    passwd.add_argument("user", nargs="?", default=None,
                        help="the user's name: prints a whole panel.users entry to paste")
    passwd.set_defaults(func=cmd_passwd)

    sub.add_parser("ingest", help="run the central ingest service (MQTT → InfluxDB): "
                                  "roomwarden ingest --config CENTRAL.yaml [--check]")

    demo = sub.add_parser("demo", help="a simulated site, the gateway polling it, its panel, "
                                       "and a local broker, ingest and database, live")
    demo.add_argument("config", type=Path, nargs="?",
                      default=Path("firmware_configs/telecom_equipment_room.yaml"),
                      help="the site to simulate (default: the telecom equipment room)")
    demo.add_argument("--print", dest="print_every", type=duration_arg, default=5.0,
                      metavar="DURATION", help="redraw the status every DURATION (default 5s)")
    demo.add_argument("--duration", type=duration_arg, metavar="DURATION",
                      help="stop after DURATION (e.g. 2m; default: at Ctrl-C)")
    demo.add_argument("--panel-port", type=int, default=8080,
                      help="port of the local panel on 127.0.0.1 (0 = any free port)")
    demo.add_argument("--no-uplink", dest="uplink", action="store_false",
                      help="no local MQTT broker, ingest or database: the gateway alone")
    demo.set_defaults(func=cmd_demo)

    config_sub = add_flashing_parsers(sub)  # keys new, flash, config diff
    add_operator_parsers(sub)  # ack, shelve, unshelve, suppress, unsuppress
    add_incident_parsers(sub)  # incident list, show, export
    add_apply_parser(config_sub)


def _describe(parser: argparse.ArgumentParser) -> None:
    """Issue 14: every subcommand's own --help opens with the line its parent lists it by."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                if not child.description:
                    child.description = helps.get(name)
                _describe(child)


# --- check --------------------------------------------------------------------------------


def _yaml_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.yaml") if p.is_file()))
        else:
            files.append(path)
    return files


def _kind_of(path: Path) -> str:
    """What a YAML file is, by where it lives: a profile, a rule pack, a drill or a config."""
    try:
        parts = path.resolve().parts
    except (OSError, RuntimeError):  # a symlink loop: reading it says why
        parts = path.absolute().parts
    if "profiles" in parts:
        return "profile"
    if "drills" in parts:
        return "drill"
    if "edge_rules" in parts:
        return "pack"
    return _kind_by_content(path)


def _kind_by_content(path: Path) -> str:
    """A file outside the folders that say what it is (a drill written in /tmp, a profile on
    a USB stick): its top-level keys say it; a config otherwise (whose check then says what
    is wrong with the file)."""
    from gateway.config.loader import ConfigErrors, read_yaml

    try:
        data, _ = read_yaml(path)
    except (ConfigErrors, OSError):
        return "config"
    if not isinstance(data, dict) or "gateway" in data:
        return "config"
    if "drill" in data:
        return "drill"
    if "pack" in data and "rules" in data:
        return "pack"
    if data.get("kind") in ("modbus", "serial_text"):
        return "profile"
    return "config"


def check_file(path: Path) -> str:
    """Validate one file; return a one-line summary or raise ConfigErrors."""
    from gateway.config.loader import load_profile
    from gateway.config.profile import ModbusProfile

    kind = _kind_of(path)
    if kind == "profile":
        profile = load_profile(path)
        count = len(profile.points if isinstance(profile, ModbusProfile) else profile.fields)
        return f"profile {profile.id}, {count} points"
    if kind == "pack":
        from gateway.rules.model import load_pack

        pack = load_pack(path)
        return f"rule pack {pack.pack}, {len(pack.rules)} rules"
    if kind == "drill":
        from gateway.drills.runner import check_drill

        drill = check_drill(path)  # the file, its site and every name it uses
        return f"drill {drill.drill}, {len(drill.steps)} steps, {len(drill.expect)} expectations"
    from gateway.flashing.precheck import config_summary
    from gateway.rules.config import default_rules_dir, load_checked_config, load_rule_packs

    loaded = load_checked_config(path)
    cfg = loaded.config
    packs = load_rule_packs(default_rules_dir(),
                            list(cfg.rules.packs) if cfg.rules.packs is not None else None)
    return config_summary(loaded, packs)


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.config.yamlfile import ConfigErrors
    from gateway.flashing.precheck import check_gateway_config, failure_lines

    files = _yaml_files(args.paths)
    if not files:
        print("no YAML files found", file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        if _kind_of(path) == "config":  # issue 14: every layer's errors in one run
            result = check_gateway_config(path)
            print("\n".join(result.lines))
            failed += 0 if result.ok else 1
            continue
        try:
            print(f"ok   {path}: {check_file(path)}")
        except ConfigErrors as exc:
            failed += 1
            print("\n".join(failure_lines(path, exc.errors)))
    return 1 if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from gateway.config.profiles import profile_adapter
    from gateway.config.schema import adapter_schema, model_schema
    from gateway.config.site import GatewayConfig

    schema = adapter_schema(profile_adapter()) if args.profile else model_schema(GatewayConfig)
    print(json.dumps(schema, indent=2))
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    if args.live:  # issue 12: a live drill (gateway.drills.live_cli)
        from gateway.control_cli import control_path
        from gateway.drills.live_cli import run as run_live

        return run_live(args, control_path(args))
    from gateway.config.yamlfile import ConfigErrors
    from gateway.drills.runner import run_drill
    from gateway.rules.config import default_rules_dir, load_rule_packs

    files = _yaml_files(args.paths)
    if not files:
        print("no drill files found", file=sys.stderr)
        return 1
    try:
        packs = load_rule_packs(default_rules_dir())
    except ConfigErrors as exc:
        print("\n".join(str(e) for e in exc.errors), file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        try:
            report = run_drill(path, packs)
        except ConfigErrors as exc:
            failed += 1
            print(f"FAIL {path}: {len(exc.errors)} error(s)")
            for error in exc.errors:
                print(f"  {error}")
            continue
        print(report.render(), flush=True)
        failed += 0 if report.ok else 1
    print(f"drills: {len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_passwd(args: argparse.Namespace) -> int:
    import getpass

    from gateway.panel.passwords import hash_password

    first = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    first = first.rstrip("\n")
    if sys.stdin.isatty() and getpass.getpass("again: ") != first:
        print("the passwords differ", file=sys.stderr)
        return 1
    if not first:
        print("an empty password is not allowed", file=sys.stderr)
        return 1
    if args.user:
        entry = hash_password(first)
        print(f"- name: {json.dumps(args.user)}\n  password_hash: {json.dumps(entry)}")
    else:
        print(hash_password(first))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    from types import FrameType

    from gateway.config.report import load_or_report

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM like Ctrl-C while starting up; once running, the demo stops everything itself
    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        loaded = load_or_report(args.config)
        if loaded is None:
            return 1
        from gateway.demo import run_demo

        asyncio.run(run_demo(loaded, args.print_every, args.duration, args.panel_port,
                             uplink=args.uplink))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
