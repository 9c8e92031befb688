"""The first flashed envelope and the first drill request do not hold the event loop (issue
15, DESIGN principle 13): a gateway at rest holds neither the config applier (its pipeline and
the contract's config messages: pydantic) nor cryptography (about 7 MiB) nor live drills; at
their first use they are imported in a worker thread (gateway.first_import: the supervisor's
`ready_applier`, `ConfigApplier._verifier`, the supervisor's drill requests), not on the
loop the buses, rules and sirens run on, and the envelope goes on through the pipeline. A real
`roomwarden run` in a fresh interpreter (tests/ops/site.yaml, trusting one key), the envelope
sent over its control socket as `roomwarden config apply --key` sends it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of
from tests.helpers import import_threads_probe
from tests.ops.conftest import SITE
from tests.ops.test_lazy_imports import run_fresh

WATCHED = ("cryptography", "cryptography.hazmat.primitives.asymmetric.ed25519",
           "gateway.flashing.apply", "gateway.drills.live_control", "gateway.drills.live")

PROBE = import_threads_probe(WATCHED) + """
    import json, logging, sys, threading, time
    from pathlib import Path

    WATCHED = ("cryptography", "cryptography.hazmat.primitives.asymmetric.ed25519",
               "gateway.flashing.apply", "gateway.drills.live_control", "gateway.drills.live")

    tmp = Path(sys.argv[2])
    ready = threading.Event()
    class Ready(logging.Handler):
        def emit(self, record):
            if "event=panel_started" in record.getMessage():
                ready.set()
    logging.getLogger("gateway.panel.server").addHandler(Ready())
    logging.getLogger("gateway.panel.server").setLevel(logging.INFO)

    seen = {}
    def client():
        ready.wait(30)
        time.sleep(1.0)  # polling and rules running: the gateway at rest
        seen["at_rest"] = [m for m in WATCHED if m in sys.modules]
        from gateway.control import request
        envelope = json.loads((tmp / "envelope.json").read_text())
        answers = list(request(tmp / "control.sock", {"op": "apply", "envelope": envelope},
                               timeout=60))
        seen["states"] = [(a.get("progress") or a.get("result") or {}).get("state")
                          for a in answers]
        seen["refusal"] = (answers[-1].get("result") or {}).get("code")
        drill = list(request(tmp / "control.sock", {"op": "drill", "action": "status"},
                             timeout=30))
        seen["drill"] = drill[-1].get("ok")
        seen["on_main"] = on_main

    threading.Thread(target=client, daemon=True).start()
    from gateway.cli import main
    code = main(["run", str(tmp / "site.yaml"), "--duration", "10", "--panel-port", "0",
                 "--state-dir", str(tmp / "state"), "--socket", str(tmp / "control.sock")])
    print(json.dumps({"code": code, **seen}))
"""


def test_the_first_envelope_s_crypto_is_imported_off_the_event_loop(tmp_path: Path) -> None:
    private_path, _ = new_key_pair(tmp_path / "keys", "ops")
    key = load_private_key(private_path)
    site = yaml.safe_load(SITE.read_text())
    if site.get("profiles_dir"):
        site["profiles_dir"] = str((SITE.parent / site["profiles_dir"]).resolve())
    site.setdefault("flashing", {})["trusted_keys"] = [public_key_line(public_of(key), "ops")]
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True))
    site["gateway"]["name"] = "Ops test room, flashed"
    envelope = sign_config(yaml.safe_dump(site, allow_unicode=True), gateway=site["gateway"]["id"],
                           version=1, author="alice", private_key=key)
    (tmp_path / "envelope.json").write_text(json.dumps(envelope.model_dump(mode="json")))
    found = run_fresh(PROBE, tmp_path)
    assert found["code"] == 0, found
    assert found["at_rest"] == []  # a gateway at rest holds no cryptography
    states = found["states"]
    assert isinstance(states, list) and states[0] == "received", found
    assert states[-1] == "applied" and found["refusal"] is None, found  # verified, applied
    assert found["drill"] is True  # a live drill's status, its modules made for it
    # neither the applier nor cryptography nor live drills were imported on the main thread
    assert found["on_main"] == dict.fromkeys(WATCHED, False)
