"""`python -m gateway.dashboards [--check] [DIR]`: write (or check) the shipped dashboard JSON.

DIR (default `dashboards/`) gets `influxql/<name>.json` and `victoriametrics/<name>.json`.
`--check` writes nothing and exits 1 if a file differs from what the definition renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    root = Path(args[0]) if args else Path("dashboards")
    stale = []
    for path, text in rendered(root).items():
        if check:
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
    sys.exit(main(sys.argv[1:]))
