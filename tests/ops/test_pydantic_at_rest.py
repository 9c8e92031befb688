"""Which of a running gateway's modules still need pydantic (issue 15): a ratchet.

pydantic and pydantic-core cost a running gateway ~6.1 MiB of its RSS (measured 6 Dec 2026:
the non-gateway imports of `roomwarden run` at 2,000 points, 39.7 MiB with them, 33.6 without),
and they go only when nothing it imports at rest needs them. A real `roomwarden run` (a site
with its panel, its rules and an uplink to a real Mosquitto) runs in a fresh interpreter; the
gateway modules it had imported when its stop was requested (at rest: its devices polled, its
alarms raised, an incident open) that import pydantic or pydantic-core at module level (not
inside a function or under TYPE_CHECKING) must be exactly `STILL_NEEDING` — a module that
starts needing pydantic fails here, and one that stops (or is no longer imported at rest) must
be taken off the list, so the list only shrinks.
When it is empty, the run must hold no pydantic at all until its stop. (Stopping, it sends the
open incident as `interrupted`: its chunks are models, imported then — the first incident.)"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from gateway.localservices import free_port
from tests.fixtures.services import Broker
from tests.ops.conftest import SITE
from tests.ops.test_lazy_imports import run_fresh

STILL_NEEDING: frozenset[str] = frozenset()
"""The gateway modules of a running gateway that import pydantic at module level (6 Dec 2026:
none; the contract's models, the panel's and the config's pydantic models are imported at the
first command, incident, config message or panel request)."""

PYDANTIC = ("pydantic", "pydantic_core")


def module_level_imports(source: str) -> set[str]:
    """The modules `source` imports when it is imported: not in a function's body nor under
    `if TYPE_CHECKING:`; in classes, `try`, `with` and other `if` blocks, yes."""
    found: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.module and not node.level:
                    found.add(node.module)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                walk(node.orelse)
                walk(node.finalbody)
                for handler in node.handlers:
                    walk(handler.body)
            elif isinstance(node, (ast.ClassDef, ast.With)):
                walk(node.body)

    walk(ast.parse(source).body)
    return found


def needs_pydantic(source: str) -> bool:
    return any(name.split(".")[0] in PYDANTIC for name in module_level_imports(source))


def test_the_import_walk_sees_module_level_imports_only() -> None:
    source = """
from __future__ import annotations
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from pydantic import BaseModel
def later() -> None:
    import pydantic_core
try:
    import pydantic.fields
except ImportError:
    pass
"""
    assert module_level_imports(source) == {"__future__", "typing", "pydantic.fields"}
    assert needs_pydantic(source)
    assert not needs_pydantic(source.replace("import pydantic.fields", "import json"))


def test_a_running_gateway_needs_pydantic_only_where_it_still_does(tmp_path: Path,
                                                                    broker: Broker) -> None:
    site = yaml.safe_load(SITE.read_text())
    silent = free_port()  # nothing answers: the devices go offline, their alarms run
    for bus in site["buses"]:
        bus["port"] = silent
    site["uplink"] = {"broker": "127.0.0.1", "port": broker.port}
    if site.get("profiles_dir"):
        site["profiles_dir"] = str((SITE.parent / site["profiles_dir"]).resolve())
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site))
    found = run_fresh(f"""
        import http.client, json, logging, re, sys, threading
        from pathlib import Path
        from gateway.cli import main
        tmp = Path(sys.argv[2])
        at_rest = {{}}

        class Panel(logging.Handler):  # the panel answers one request (its server is made)
            def emit(self, record: logging.LogRecord) -> None:
                found = re.search(r"event=panel_started .*port=(\\d+)", record.getMessage())
                if found:
                    threading.Thread(target=ask, args=(int(found[1]),), daemon=True).start()

        def ask(port: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()

        logging.getLogger("gateway.panel.server").addHandler(Panel())
        logging.getLogger("gateway.panel.server").setLevel(logging.INFO)

        class AtStop(logging.Handler):  # what the gateway holds when its stop is requested
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage() == "event=stop_requested" and not at_rest:
                    at_rest.update(modules=list(sys.modules))

        logging.getLogger("roomwarden.service").addHandler(AtStop())
        code = main(["run", {str(config)!r}, "--duration", "2", "--panel-port", "0",
                     "--state-dir", str(tmp / "state"), "--socket", str(tmp / "control.sock")])
        held = set(at_rest["modules"])
        files = {{name: module.__file__ for name, module in list(sys.modules.items())
                 if name in held and name.startswith("gateway")
                 and getattr(module, "__file__", None)}}
        print(json.dumps({{"code": code, "files": files,
                          "uplink": "gateway.uplink.publisher" in held,
                          "panel": "gateway.panel.server" in held,
                          "pydantic": [m for m in {PYDANTIC!r} if m in held]}}))
    """, tmp_path)
    assert found["code"] == 0
    assert found["uplink"] and found["panel"]  # the run had what a site runs (its panel used)
    files = found["files"]
    assert isinstance(files, dict)
    needing = {name for name, file in files.items()
               if needs_pydantic(Path(file).read_text(encoding="utf-8"))}
    assert needing <= STILL_NEEDING, f"new at rest: {sorted(needing - STILL_NEEDING)}"
    assert needing == STILL_NEEDING, (
        f"not imported at rest or no longer needing pydantic (take them off STILL_NEEDING): "
        f"{sorted(STILL_NEEDING - needing)}")
    if not needing:
        assert found["pydantic"] == []
