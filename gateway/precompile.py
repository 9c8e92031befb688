"""Compile, at install time, the byte-code a gateway's first start would compile
(`python -m gateway.precompile`, run by systemd/install.sh after it switched to the new
version; needs `PYTHONPYCACHEPREFIX`, the unit's cache directory, and `UNIT_SETTINGS`).

The unit runs the gateway without docstrings and asserts (`PYTHONOPTIMIZE=2`), whose byte-code
(`.opt-2.pyc`) no package ships, and the config check's child process without them (plain
`.pyc`, gateway.isolated_check), both cached under `PYTHONPYCACHEPREFIX`
(systemd/roomwarden.service). Without this, the first start after an install or an upgrade
compiles what it imports — about 7 MB, a CPU-second on the development machine and several
on a Pi — while the site is not polled. Here every module of the gateway package is compiled
at both levels (without importing it), and what the two processes import from the standard
library and the dependencies is imported once at each level, in child interpreters, which
writes its byte-code to the cache."""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
from pathlib import Path

UNIT_SETTINGS = {"PYTHONNODEBUGRANGES": "1"}
"""The unit's settings beside PYTHONOPTIMIZE that change the byte-code it compiles: code objects
without column tables (systemd/roomwarden.service). A cache compiled without them would still
be read — the unit strips the tables as it loads — but it would not be what the unit compiles,
and it is 1 MB larger: this process runs with them, as install.sh starts it, so that its own
imports and its children's are compiled as the unit's (tests/service/test_unit_run.py compares
the two)."""
CODECS = ("encodings.ascii", "encodings.unicode_escape")
"""Codecs looked up by name at run time (a device's text register, YAML's escapes)."""
LATE_IMPORTS = ("gateway.ops.collector", "gateway.ops.process_metrics", "encodings.idna",
                "ctypes", "gateway.flashing.apply", "gateway.reconfigure",
                "gateway.drills.live_control", "gateway.drills.signed", "gateway.contract.wire",
                "gateway.panel.views")
"""What a running gateway imports at its first /metrics scrape, on the event loop (its
collector, the text writer and the process metrics: no prometheus_client since issue 15, whose
`http.server`, `email` … took 0.37 s to compile on the development machine), at its first
connection to the broker (the idna codec
`socket.getaddrinfo` encodes a host name with: in the connecting thread, which holds the
interpreter's lock while it compiles), and ctypes: at its first config apply (gateway.heap's
trim) or, without systemd-timesyncd's flag, its first clock check (gateway.clocksync); and
pydantic with the models a gateway at rest no longer imports (issue 15): the contract's
(gateway.contract.wire: every message model) at its first command, incident or config message,
the panel's (gateway.panel.views) at its first panel request."""
RUN_IMPORTS = ("gateway.cli", "gateway.supervisor", "gateway.panel.server",
               "gateway.uplink.publisher", "gateway.operator.inbox", "regex", *LATE_IMPORTS,
               *CODECS)
"""What `roomwarden run` with the panel and an uplink imports before it serves or connects
(tests/bench/bench_imports.py), the operator commands' checker, `regex` (the first serial-text
device's poller imports it) and `LATE_IMPORTS`.
tests/service/test_unit_run.py keeps this list whole: a gateway started as the unit starts it
compiles nothing after this ran, nor at its first scrape and broker connection."""
CHECK_IMPORTS = ("gateway.isolated_check", "gateway.rules.config", "gateway.config.loader",
                 "gateway.config.yamlsafe", "yaml", "pickle", "pydantic._internal._dataclasses",
                 "pydantic.dataclasses", "pydantic.type_adapter", "regex", *CODECS)
"""What the config check's child imports (gateway.isolated_check; `regex` at a serial-text
profile's pattern), YAML's reader, pydantic's
support for the config sections that are dataclasses (gateway.config.section) and the
TypeAdapter it validates them with (imported when the first one is built: the site config no
longer imports the wire contract, which brought it at import, issue 15), and the pickler of its
answer included."""


def main() -> int:
    prefix = sys.pycache_prefix
    if not prefix:
        print("gateway.precompile: PYTHONPYCACHEPREFIX is not set: the byte-code would go "
              "beside the sources, not where the unit reads it", file=sys.stderr)
        return 2
    unset = [f"{key}={value}" for key, value in UNIT_SETTINGS.items()
             if os.environ.get(key) != value]
    if unset:
        print(f"gateway.precompile: run it with {' '.join(unset)}, as the unit runs the gateway: "
              "the byte-code would not be what the unit compiles", file=sys.stderr)
        return 2
    package = Path(__file__).resolve().parent
    compiled = all(compileall.compile_dir(str(package), quiet=1, optimize=level)
                   for level in (0, 2))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONOPTIMIZE", "PYTHONDONTWRITEBYTECODE")}
    for flags, modules in ((["-OO"], RUN_IMPORTS), ([], CHECK_IMPORTS)):
        code = "; ".join(f"import {name}" for name in modules)
        done = subprocess.run([sys.executable, *flags, "-c", code], env=env, check=False)
        compiled = compiled and done.returncode == 0
    print(f"gateway.precompile: byte-code in {prefix}" + ("" if compiled else " (with errors)"))
    return 0 if compiled else 1


if __name__ == "__main__":
    raise SystemExit(main())
