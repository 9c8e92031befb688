"""`python -m gateway.dashboards [--check] [DIR]`: write (or check) the shipped dashboard JSON.

DIR (default `dashboards/`) gets `influxql/<name>.json` and `victoriametrics/<name>.json`.
`--check` writes nothing and exits 1 if a file differs from what the definition renders.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.closed_pipe import run_command
from gateway.dashboards.definition import DASHBOARDS
from gateway.dashboards.model import render

FOLDERS = {"influxql": "influxql", "metricsql": "victoriametrics"}


def rendered(root: Path) -> dict[Path, str]:
    """Every shipped file and its text."""
    out: dict[Path, str] = {}
    for dashboard in DASHBOARDS:
        name = dashboard.uid.removeprefix("roomwarden-") + ".json"
        for flavour, folder in FOLDERS.items():
            text = json.dumps(render(dashboard, flavour), indent=2,  # type: ignore[arg-type]
                              ensure_ascii=False) + "\n"
            out[root / folder / name] = text
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.dashboards",
        description="Write the Grafana dashboards' JSON from their one definition "
                    "(gateway/dashboards/definition.py): DIR/influxql/<name>.json and "
                    "DIR/victoriametrics/<name>.json.")
    parser.add_argument("directory", nargs="?", type=Path, default=Path("dashboards"),
                        metavar="DIR", help="where to write them (default: dashboards)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and list the files that differ from what "
                             "the definition renders (or are missing)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help: the usage, and nothing written
    stale = []
    for path, text in rendered(args.directory).items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print("stale (run python -m gateway.dashboards):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
