"""What a running gateway holds at rest for its panel and its boot-time files (issue 15): a real
`roomwarden run` whose panel listens from the start, but whose panel models (gateway.panel.views:
pydantic) and the boot-time files' models (the orphaned outputs', the warm-start file's) are not
imported, and whose own modules (the panel's, the boot files', the signature check) import
no pydantic at all — until the first request that needs the models, which then works.

`pydantic` is imported at rest all the same, by the config classes other conversions deal
with, so the test records who imports it: every `import pydantic…` statement goes through
`builtins.__import__`, even of a module already loaded, and the wrapper notes the importer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.status import health_data, health_view
from tests.helpers import PROBE_PANEL_PORT, until
from tests.ops.test_lazy_imports import run_fresh
from tests.panel.live import live_panel

OURS = ("gateway.panel.", "gateway.panel_backend", "gateway.actions.orphans",
        "gateway.rules.warm_file", "gateway.operator.signing")
"""The modules this conversion owns (a prefix each)."""

AT_REST_LEAVES_OUT = ["gateway.panel.views", "gateway.actions.orphan_models",
                      "gateway.rules.warm_models"]
"""Models a gateway at rest does without: the panel's (until its first request) and the boot
files' (used only for a file that is not one the gateway wrote: gateway.rules.warm_file)."""

SHIPPED_SITE = Path(__file__).resolve().parents[2] / "firmware_configs" / \
    "datacenter_lithium_room.yaml"

_PROBE = """
    import builtins, http.client, json, logging, re, sys, threading, time
    from pathlib import Path
    importers = set()
    plain_import = builtins.__import__
    def recording(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and (name.split(".")[0] in ("pydantic", "pydantic_core")
                           or name == "gateway.strict"):
            importers.add((globals or {}).get("__name__", "?"))
        return plain_import(name, globals, locals, fromlist, level)
    builtins.__import__ = recording

""" + PROBE_PANEL_PORT + """
    def ask(port, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        data = json.loads(reply.read())
        conn.close()
        return reply.status, data

    seen = {}
    def client():
        while not ports:
            time.sleep(0.02)
        time.sleep(1.0)  # polling and rules running: the gateway at rest
        seen["rest"] = {"ours": sorted(m for m in importers if m.startswith(OURS)),
                        "loaded": [m for m in LEAVES_OUT if m in sys.modules]}
        status, state = ask(ports[0], "GET", "/api/state")
        seen["get"] = [status, sorted(state)[:3], "alarms" in state]
        status, login = ask(ports[0], "POST", "/api/login",
                            json.dumps({"user": "nobody", "password": "wrong"}))
        seen["post"] = [status, login.get("error")]
        status, invalid = ask(ports[0], "POST", "/api/login", json.dumps({"user": ""}))
        seen["invalid"] = [status, invalid.get("error"), invalid.get("message")]
        seen["after"] = [m for m in LEAVES_OUT if m in sys.modules]
"""

RUN_WITH_CLIENT = """
    threading.Thread(target=client, daemon=True).start()
    from gateway.cli import main
    tmp = Path(sys.argv[2])
    code = main(["run", sys.argv[1], "--duration", "4", "--panel-port", "0",
                 "--state-dir", str(tmp / "state"), "--socket", str(tmp / "control.sock")])
    print(json.dumps({"code": code, **seen}))
"""
"""A probe's end: its `client` thread started, a 4-second `roomwarden run` of the site, what
the client saw printed."""


def test_a_gateway_at_rest_holds_no_panel_or_boot_file_models(tmp_path: Path) -> None:
    found = run_fresh((_PROBE + RUN_WITH_CLIENT).replace("LEAVES_OUT", repr(AT_REST_LEAVES_OUT))
                      .replace("OURS", repr(OURS)), tmp_path)
    assert found["code"] == 0
    assert found["rest"] == {"ours": [], "loaded": []}
    assert found["get"] == [200, ["alarms", "drill", "evaluated"], True]
    assert found["post"] == [401, "login_failed"]
    assert found["invalid"] == [400, "invalid_body", "invalid LoginCommand: user: String should "
                                "have at least 1 character; password: Field required"]
    assert found["after"] == ["gateway.panel.views"]


async def test_an_incident_s_health_is_the_panel_s_health_view(tmp_path: Path) -> None:
    """What an incident records of the gateway's health, made without the panel's models
    (gateway.status.health_data), is the panel's `HealthView` as JSON, field for field and in
    order — on a shipped site with buses, outputs and an interlock, polled."""
    async with live_panel(SHIPPED_SITE, tmp_path, uplink=False) as running:
        g = running.gateway
        await until(lambda: all(loop.stats.cycles for loop in g.bus_loops), what="polls")
        args = (g.loaded, g.bus_loops, g.core.planner, g.driver, 12.34)
        options: dict[str, Any] = {"flood": True, "uplink": "connected", "outbox_depth": 3,
                                   "config_version": 2, "config_sha256": "ab" * 32}
        for given_options in ({}, options):
            data = health_data(*args, **given_options)
            view = health_view(*args, **given_options).model_dump(mode="json")
            assert json.dumps(data) == json.dumps(view)
        assert data["outputs"] and data["buses"]


def test_the_gateway_s_own_boot_files_are_read_without_their_models(tmp_path: Path) -> None:
    """A warm-start file and a pending coil release as the gateway writes them are read back
    (what every `roomwarden run` does at boot when they exist) without their pydantic models;
    a release that is not one the gateway wrote is refused by its model, with its words. (This
    process imports nothing else: pydantic is not imported at all until that refusal.)"""
    found = run_fresh("""
        import json, sys
        from array import array
        from gateway.actions.orphans import decode
        from gateway.rules.warm_file import decode_saved, encode
        data = encode(10**18, 500.0, {"a.t": ("src", [(array("d", [499.0, 499.5]),
                                                      array("d", [1.0, 2.0]))])}, "boot",
                      True)
        saved = decode_saved(data)
        assert saved.synced is True
        release = {"output": {"id": "fan-1", "role": "exhaust_fan", "device": "do-1",
                              "point": "do1", "rooms": ["batt"], "on_value": True,
                              "verify": True, "backoff": {"initial": 5.0, "multiplier": 2.0,
                                                          "max": 300.0}},
                   "bus": "rs485", "line": ["rtu", "/dev/ttyUSB0"], "unit": 31, "address": 0,
                   "rooms": ["batt"], "version": 4, "tries": 2, "error": "no reply"}
        text = json.dumps({"version": 1, "releases": [release]})
        orphans, problems = decode(text)
        models = ["gateway.rules.warm_models", "gateway.actions.orphan_models"]
        own = [m for m in ["pydantic", *models] if m in sys.modules]
        refused = decode(json.dumps({"version": 1, "releases": [{**release, "unit": 256}]}))
        print(json.dumps({"own": own, "points": list(saved.points), "boot": saved.boot_id,
                          "ages": list(saved.points["a.t"].ages_ms),
                          "orphans": [o.name for o in orphans], "problems": problems,
                          "refused": refused[1],
                          "then": [m for m in models if m in sys.modules]}))
    """, tmp_path)
    assert found == {
        "own": [], "points": ["a.t"], "boot": "boot", "ages": [1000, 500],
        "orphans": ["do-1.do1"], "problems": [],
        "refused": ["release 0 (output 'fan-1'): unit: Input should be less than or equal "
                    "to 255 (1 errors): refused"],
        "then": ["gateway.actions.orphan_models"]}
