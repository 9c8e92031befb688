"""What a running gateway imports on its event loop's thread after it started (issue 15, DESIGN
principle 13): a real `roomwarden run` (tests/ops/site.yaml) at rest, then what its users do —
the panel's page, state, login check, Events and Incidents views, /healthz, /metrics,
`roomwarden status`, a live drill's status, the incident list. Every module such a first use
needs beyond what the gateway holds at rest is imported in a worker thread (gateway.first_import,
gateway.panel.front); all the loop's thread imports is `pwd`. Any other name — pydantic,
cryptography, the panel's server, the config applier — would hold the buses, rules and sirens
at a first use."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import PROBE_PANEL_PORT
from tests.ops.test_lazy_imports import run_fresh

ON_THE_LOOP = {
    "pwd",  # the control socket names its peer (stdlib, a C module)
}
"""Modules the loop's thread may import after the start."""

_PROBE = """
    import builtins, http.client, json, logging, re, sys, threading, time
    from pathlib import Path

    armed = threading.Event()
    on_loop = set()
    plain_import = builtins.__import__
    def recording(name, globals=None, locals=None, fromlist=(), level=0):
        if not armed.is_set() or threading.current_thread() is not threading.main_thread():
            return plain_import(name, globals, locals, fromlist, level)
        before = set(sys.modules)
        try:
            return plain_import(name, globals, locals, fromlist, level)
        finally:
            on_loop.update(set(sys.modules) - before)
    builtins.__import__ = recording

""" + PROBE_PANEL_PORT + """
    tmp = Path(sys.argv[2])
    def get(path):
        conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
        conn.request("GET", path)
        reply = conn.getresponse()
        reply.read()
        conn.close()
        return reply.status

    seen = {}
    def client():
        while not ports:
            time.sleep(0.02)
        time.sleep(1.5)  # polling and rules running: the gateway at rest
        armed.set()
        from gateway.control import request
        seen["panel"] = [get(path) for path in ("/", "/api/state", "/api/me",
                                                "/api/events?last=24h", "/api/incidents",
                                                "/healthz", "/metrics")]
        ask = lambda body: list(request(tmp / "control.sock", body, timeout=30))[-1]
        seen["control"] = [ask({"op": "status"}).get("ok"),
                           ask({"op": "drill", "action": "status"}).get("ok"),
                           ask({"op": "incident", "action": "list"}).get("ok")]
        seen["on_loop"] = sorted(on_loop)

    threading.Thread(target=client, daemon=True).start()
    from gateway.cli import main
    code = main(["run", sys.argv[1], "--duration", "6", "--panel-port", "0",
                 "--state-dir", str(tmp / "state"), "--socket", str(tmp / "control.sock")])
    print(json.dumps({"code": code, **seen}))
"""


def test_first_uses_import_on_the_loop_only_small_modules(tmp_path: Path) -> None:
    found = run_fresh(_PROBE, tmp_path)
    assert found["code"] == 0
    panel = found["panel"]
    assert isinstance(panel, list) and panel[:5] == [200] * 5 and panel[6] == 200, panel
    assert found["control"] == [True, True, True]
    names = found["on_loop"]
    assert isinstance(names, list)
    extra = sorted(set(names) - ON_THE_LOOP)
    assert not extra, f"imported on the event loop's thread after the start: {extra}"
