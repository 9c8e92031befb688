"""What each dependency costs the gateway at import: RSS and time, each in a fresh interpreter.

Two figures per module: *alone* (imported into a bare interpreter that has only `asyncio`
loaded) and *on top of the core* (imported after what a `roomwarden run` without panel and
uplink imports: `gateway.supervisor` and `gateway.cli`) — the second is what enabling a
feature adds to a running gateway, the first what the module and its dependencies weigh by
themselves. RSS is VmRSS from /proc/self/status; time is the CPU time of the import
statement (process time: steadier than wall time on a shared machine; the median of
`REPEATS` interpreters). Printed as a table and JSON; the table in
docs/performance.md comes from here.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from tests.bench.common import REPO, emit_json

REPEATS = 3
CORE = "import gateway.cli, gateway.supervisor"

MODULES: list[tuple[str, str, str]] = [
    # (what, import statement, used for)
    ("pydantic", "import pydantic", "every model (config, contract, panel API)"),
    ("PyYAML", "import yaml", "config and rule files"),
    ("pymodbus client", "import pymodbus.client", "Modbus RTU/TCP"),
    ("pyserial", "import serial", "RS-485 and serial text"),
    ("sqlite3", "import sqlite3", "alarm journal, outbox"),
    ("tenacity", "import tenacity", "back-off schedule"),
    ("paho-mqtt", "import paho.mqtt.client", "uplink"),
    ("h11", "import h11", "the panel's server (gateway.ops.http)"),
    ("cryptography (Ed25519)",
     "import cryptography.hazmat.primitives.asymmetric.ed25519, "
     "cryptography.hazmat.primitives.serialization", "signed configs and commands"),
    ("prometheus_client", "import prometheus_client",
     "the ingest's /metrics (a gateway's until issue 15: gateway.ops.exposition now)"),
    ("importlib.metadata", "import importlib.metadata",
     "nothing in a gateway (pydantic's plugin search and pydantic.networks, until 4 Dec 2026)"),
    ("gateway.config.loader", "import gateway.config.loader", "config models"),
    ("gateway.rules.config", "import gateway.rules.config", "rule pack models"),
    ("gateway.contract.wire", "import gateway.contract.wire", "wire contract models"),
    ("gateway.uplink.publisher", "import gateway.uplink.publisher", "uplink"),
    ("gateway.panel.server", "import gateway.panel.server", "the panel"),
    ("gateway.ops.collector", "import gateway.ops.collector, gateway.ops.process_metrics",
     "/metrics (what the first scrape imports: collector, text writer, process metrics)"),
    ("roomwarden run (core)", CORE, "everything the run command imports"),
    ("roomwarden run with the panel and an uplink",
     CORE + ", gateway.panel.server, gateway.uplink.publisher",
     "what a site with both sections imports before it serves or connects"),
    ("a shipped site and the five rule packs, loaded",
     "from gateway.rules.config import load_checked_config; "
     "loaded = load_checked_config(__import__('pathlib').Path("
     "'firmware_configs/datacenter_lithium_room.yaml'))",
     "the config check's child (a gateway takes its answer: 0.6 MiB)"),
]

PROBE = """
import asyncio, json, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
{setup}
before, began = rss(), time.process_time()
{statement}
print(json.dumps({{"ms": (time.process_time() - began) * 1000, "mib": rss() - before,
                  "rss": rss()}}))
"""


def probe(statement: str, setup: str = "") -> dict[str, float]:
    runs = []
    for _ in range(REPEATS):
        done = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup,
                                                                 statement=statement)],
                              cwd=REPO, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in ("ms", "mib", "rss")}


def main() -> dict[str, Any]:
    bare = probe("pass")
    results: dict[str, Any] = {"interpreter_with_asyncio_rss_mib": bare["rss"], "modules": {}}
    rows = []
    for name, statement, use in MODULES:
        alone = probe(statement)
        on_core = probe(statement, setup=CORE) if statement != CORE else alone
        results["modules"][name] = {"alone": alone, "on_core": on_core, "use": use}
        rows.append((name, f"{alone['mib']:.1f}", f"{alone['ms']:.0f}",
                     f"{on_core['mib']:.1f}", f"{on_core['ms']:.0f}", use))
    headers = ("module", "MiB alone", "CPU ms alone", "MiB on core", "CPU ms on core",
               "used for")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n== Import cost (fresh interpreters, median of {REPEATS}; an interpreter with "
          f"asyncio and json: {bare['rss']:.1f} MiB)")
    for row in [headers, *rows]:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    emit_json("imports", results)
    return results


if __name__ == "__main__":
    main()
