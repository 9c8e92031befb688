"""A gateway imports a feature's dependencies only when the feature is configured or used:
the panel's server (h11; aiohttp never) only with the panel enabled, the uplink (paho) only with an
`uplink:` section, the metrics' collector at the first registry (the first scrape; never
prometheus_client, issue 15), cryptography when a key or an envelope is handled. Each case runs
in a fresh interpreter (sys.modules of this test process already holds everything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.ops.conftest import SITE, Broker
from tests.service.unitfile import unit_environment

REPO = Path(__file__).resolve().parents[2]


def run_fresh(code: str, tmp_path: Path, env: dict[str, str] | None = None
              ) -> dict[str, object]:
    """Run `code` in a new interpreter (this checkout's code first on its path: a git
    worktree's venv may be its main checkout's editable install; `env` added to this process's
    environment); it prints one JSON object as its last line."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(code))
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, str(script), str(SITE), str(tmp_path)], cwd=REPO,
                          env={**os.environ, **(env or {}), "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_the_run_command_imports_no_optional_dependency(tmp_path: Path) -> None:
    found = run_fresh("""
        import json, sys
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        heavy = ["h11", "aiohttp", "prometheus_client", "paho", "regex"]  # regex: serial text
        print(json.dumps({"loaded": [m for m in heavy if m in sys.modules]}))
    """, tmp_path)
    assert found == {"loaded": []}


def test_a_run_boots_and_saves_without_tempfile_shutil_or_gzip(tmp_path: Path) -> None:
    """The boot's config store and the minute's atomic saves (warm-start file) make their
    temporary files themselves: `tempfile` would hold `shutil`, `bz2` and `lzma` in every
    running gateway (~1 MiB, issue 15). A staged apply still uses them, at the apply. The
    flight recorder writes its gzip files through zlib (the same bytes), not `gzip`."""
    found = run_fresh("""
        import json, sys
        from pathlib import Path
        import gateway.cli, gateway.supervisor
        from gateway.flashing.store import ConfigStore
        from gateway.storage import atomic_write
        tmp = Path(sys.argv[2])
        choice = ConfigStore(tmp / "configs").boot(Path(sys.argv[1]))
        atomic_write(tmp / "rates.bin", [b"saved"])
        heavy = ["tempfile", "shutil", "bz2", "lzma", "gzip"]
        print(json.dumps({"loaded": [m for m in heavy if m in sys.modules],
                          "saved": (tmp / "rates.bin").read_bytes().decode(),
                          "booted": choice.path.name}))
    """, tmp_path)
    assert found == {"loaded": [], "saved": "saved", "booted": Path(SITE).name}


def test_the_parser_reads_no_yaml_and_builds_no_model(tmp_path: Path) -> None:
    """`roomwarden --help` and every command's parser: no YAML reader, no pydantic (issue 15:
    the suite and the operator start the CLI hundreds of times for a line of help)."""
    found = run_fresh("""
        import json, sys
        import gateway.cli
        gateway.cli.build_parser()
        print(json.dumps({"loaded": [m for m in ("yaml", "pydantic") if m in sys.modules]}))
    """, tmp_path)
    assert found == {"loaded": []}


def test_parsing_a_run_command_imports_no_shutil(tmp_path: Path) -> None:
    """argparse's own help formatter imports `shutil` (with `bz2`, `lzma`: 0.5 MiB) at every
    `add_argument`; the command's parser parses `run`, nested commands included, without it,
    and its help is as wide as argparse's would be."""
    found = run_fresh("""
        import json, os, sys
        import gateway.cli
        parser = gateway.cli.build_parser()
        args = parser.parse_args(["run", "site.yaml", "--duration", "3s"])
        parser.parse_args(["keys", "new", "k1"])
        loaded = [m for m in ("shutil", "bz2", "lzma") if m in sys.modules]
        import argparse
        from gateway.argparser import Formatter
        widths = []
        for columns in ("60", "", "junk"):
            os.environ["COLUMNS"] = columns
            widths.append([Formatter("x")._width, argparse.HelpFormatter("x")._width])
        print(json.dumps({"loaded": loaded, "duration": args.duration, "widths": widths}))
    """, tmp_path)
    assert found == {"loaded": [], "duration": 3.0, "widths": [[58, 58], [78, 78], [78, 78]]}


def test_a_gateway_boots_and_checks_an_apply_without_validating_a_config(tmp_path: Path
                                                                        ) -> None:
    """Boot and apply check configs in a child process (gateway.isolated_check): the running
    gateway holds the checked config and its rule packs but never builds the validators of
    the config, profiles or packs (4 MiB at 2,000 points, issue 15) and never loads PyYAML
    (0.8 MiB); an apply's errors still come back with file, line, path and reason."""
    found = run_fresh("""
        import asyncio, json, sys
        from pathlib import Path
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        from gateway.config.profile import ModbusProfile
        from gateway.config.profiles import profile_adapter
        from gateway.config.section import _VALIDATORS
        from gateway.config.site import Device, GatewayConfig
        from gateway.rules.model import RulePack
        from gateway.rules.warm import fingerprints
        from gateway.supervisor import Service

        from gateway.config.section import _VALIDATORS
        site, tmp = Path(sys.argv[1]), Path(sys.argv[2])
        models = (GatewayConfig, ModbusProfile, Device, RulePack)
        seen = {}

        def built(model):  # a model's validator, a section's, or the profiles' union's
            return (bool(model.__dict__.get("__pydantic_complete__")) or model in _VALIDATORS
                    or (model is ModbusProfile and profile_adapter.cache_info().currsize > 0))

        async def main() -> None:
            service = Service(site, state_dir=tmp / "state", control_path=tmp / "control.sock",
                              panel_port=0)
            seen["packs"] = sorted(service.gateway.loaded.packs or ())
            seen["rules"] = len(service.gateway.core.engine.bindings()) > 0
            fingerprints(service.gateway.loaded)  # the warm-start file's, at its first save
            seen["after_boot"] = [built(m) for m in models]
            seen["yaml_after_boot"] = "yaml" in sys.modules
            text = site.read_text().replace("poll_interval: 200ms", "poll_interval: soon", 1)
            status = await service.applier.apply_text(text, author="test")
            seen["apply"] = [status.state, status.code, "poll_interval" in (status.error or "")]
            seen["after_apply"] = [built(m) for m in models]
            seen["yaml_after_apply"] = "yaml" in sys.modules
            service.gateway.core.close()

        asyncio.run(main())
        print(json.dumps(seen))
    """, tmp_path)
    assert found == {"packs": ["environment", "explosion", "fire", "power", "sensor_health"],
                     "rules": True, "after_boot": [False, False, False, False],
                     "yaml_after_boot": False, "apply": ["rejected", "invalid_config", True],
                     "after_apply": [False, False, False, False], "yaml_after_apply": False}


def test_a_config_schema_is_built_when_first_validated(tmp_path: Path) -> None:
    """Importing the config models builds no validator (issue 15: pydantic's `defer_build`);
    the first validation builds it, and only for what is validated."""
    found = run_fresh("""
        import json, sys
        from gateway.config.loader import load_gateway_config
        from gateway.config.section import _VALIDATORS
        from gateway.config.site import GatewayConfig
        from gateway.contract.wire import TelemetryBatch
        before = GatewayConfig in _VALIDATORS
        load_gateway_config(__import__("pathlib").Path(sys.argv[1]))
        print(json.dumps({"before": before, "after": GatewayConfig in _VALIDATORS,
                          "wire": TelemetryBatch.__pydantic_complete__}))
    """, tmp_path)
    assert found == {"before": False, "after": True, "wire": False}


def test_panel_and_uplink_dependencies_come_with_their_sections(tmp_path: Path) -> None:
    found = run_fresh("""
        import asyncio, dataclasses, json, sys
        from pathlib import Path
        from gateway.config.loader import load_gateway_config
        from gateway.daemon import Gateway
        from gateway.config.section import replaced, validator
        from gateway.uplink.settings import UplinkSettings

        site, tmp = Path(sys.argv[1]), Path(sys.argv[2])
        loaded = load_gateway_config(site)
        cfg = loaded.config
        bare = dataclasses.replace(loaded, config=replaced(cfg, **{
            "panel": replaced(cfg.panel, enabled=False)}))
        full = dataclasses.replace(loaded, config=replaced(cfg, **{
            "uplink": validator(UplinkSettings).validate_python({"broker": "127.0.0.1",
                                                                 "port": 9})}))
        seen = {}

        async def main() -> None:
            gateway = Gateway(bare, state_dir=tmp / "bare")
            seen["bare"] = [m for m in ("h11", "aiohttp", "paho") if m in sys.modules]
            gateway.core.close()
            gateway = Gateway(full, state_dir=tmp / "full", panel_port=0)
            seen["full"] = [m for m in ("h11", "aiohttp", "paho") if m in sys.modules]
            seen["metrics_before_scrape"] = "prometheus_client" in sys.modules
            assert gateway.panel is not None
            seen["panel_server_before_use"] = "gateway.panel.server" in sys.modules
            registry = gateway.panel.server.metrics
            seen["panel_server_after_use"] = [m for m in ("h11", "gateway.panel.server")
                                              if m in sys.modules]
            seen["metrics_after_scrape"] = "prometheus_client" in sys.modules
            from gateway.ops.metrics import render
            seen["exposition"] = b"roomwarden_bus_poll_cycles_total" in render(registry)
            gateway.core.close()
            if gateway.uplink is not None:
                await gateway.uplink.close()

        asyncio.run(main())
        print(json.dumps(seen))
    """, tmp_path)
    assert found == {"bare": [], "full": ["paho"], "metrics_before_scrape": False,
                     "panel_server_before_use": False,
                     "panel_server_after_use": ["h11", "gateway.panel.server"],
                     "metrics_after_scrape": False, "exposition": True}


def test_a_scrape_of_a_running_gateway_imports_its_collector_alone(tmp_path: Path) -> None:
    """A running gateway polling the simulator, scraped over HTTP: the scrape imports the
    collector, the text writer and the process metrics, and nothing else — no
    prometheus_client, whose package brought `http.server`, `email`, `wsgiref` … and 2.8 MiB
    (issue 15). The answer is the gateway's, with its process metrics."""
    found = run_fresh("""
        import asyncio, json, sys
        from pathlib import Path
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        from gateway.config.loader import load_gateway_config
        from gateway.daemon import Gateway
        from gateway.sim.site import SimulatedSite

        site_file, tmp = Path(sys.argv[1]), Path(sys.argv[2])
        seen = {}

        async def get(port, path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
                         "Connection: close\\r\\n\\r\\n".encode())
            answer = await reader.read()
            writer.close()
            return answer.decode()

        async def main():
            async with SimulatedSite(load_gateway_config(site_file)) as sim:
                loaded = load_gateway_config(sim.write_config(tmp / "sim.yaml"))
                gateway = Gateway(loaded, state_dir=tmp / "state", panel_port=0)
                task = asyncio.create_task(gateway.run())
                await asyncio.wait_for(gateway.panel_ready.wait(), 10)
                while gateway.evaluations == 0:
                    await asyncio.sleep(0.05)
                await get(gateway.panel_port, "/healthz")  # the HTTP path, warmed
                before = set(sys.modules)
                answer = await get(gateway.panel_port, "/metrics")
                seen["imported"] = sorted(set(sys.modules) - before)
                seen["status"] = answer.split("\\r\\n", 1)[0]
                seen["families"] = [name for name in ("roomwarden_devices_online",
                                                      "process_resident_memory_bytes")
                                    if f"\\n{name} " in answer]
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(main())
        print(json.dumps(seen))
    """, tmp_path)
    assert found == {"imported": ["gateway.ops.collector", "gateway.ops.exposition",
                                  "gateway.ops.process_metrics"],
                     "status": "HTTP/1.1 200 OK", "families": [
                         "roomwarden_devices_online", "process_resident_memory_bytes"]}


def test_an_uplink_publishing_leaves_urllib_request_unrun(broker: Broker, tmp_path: Path) -> None:
    """paho imports urllib.request (http.client, `email`, `calendar`) for a proxy it reads only
    with PySocks installed: an uplink connects and publishes without running it, a later
    `import urllib.request` does not run it either, and its first use finds the whole module
    (the proxy paho would look up)."""
    found = run_fresh("""
        import asyncio, contextlib, json, os, sys, time, types
        from pathlib import Path
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        from gateway.clock import SystemClock
        from gateway.contract.wire import PointMeta
        from gateway.field.sample import Quality, Sample
        from gateway.config.section import validator
        from gateway.uplink.publisher import Uplink
        from gateway.uplink.settings import UplinkSettings

        heavy = ["http.client", "email", "calendar"]
        seen = {"socks": "socks" in sys.modules}

        async def main() -> None:
            settings = validator(UplinkSettings).validate_python({
                "broker": "127.0.0.1", "port": BROKER_PORT, "delivery": "puback",
                "outbox": {"commit_interval": "200ms"}})
            points = {"th-1.temperature": PointMeta(device="th-1", room="r1",
                                                    quantity="temperature", unit="°C")}
            uplink = Uplink(settings, "site-1", "gw-1", Path(sys.argv[2]) / "state",
                            SystemClock(), points)
            task = asyncio.create_task(uplink.run())
            uplink.on_samples([Sample("th-1.temperature", 21.5, time.time_ns(), Quality.GOOD)])
            deadline = time.monotonic() + 20
            while uplink.status().published < 1 or uplink.status().outbox.depth:
                assert time.monotonic() < deadline, uplink.status()
                await asyncio.sleep(0.02)
            seen["published"] = uplink.status().published >= 1
            seen["connected"] = uplink.status().connected
            await uplink.close()  # ends run()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())
        seen["after_publish"] = [m for m in heavy if m in sys.modules]
        import urllib.request
        seen["after_import"] = [m for m in heavy if m in sys.modules]
        os.environ["mqtt_proxy"] = "http://127.0.0.1:3128"
        seen["proxies"] = urllib.request.getproxies().get("mqtt")
        seen["bypass"] = urllib.request.proxy_bypass("127.0.0.1")
        seen["whole"] = type(sys.modules["urllib.request"]) is types.ModuleType
        seen["after_use"] = [m for m in heavy if m in sys.modules]
        print(json.dumps(seen))
    """.replace("BROKER_PORT", str(broker.port)), tmp_path)
    assert found == {"socks": False, "published": True, "connected": True, "after_publish": [],
                     "after_import": [], "proxies": "http://127.0.0.1:3128", "bypass": False,
                     "whole": True, "after_use": ["http.client", "email", "calendar"]}


def test_an_outlier_rule_judges_without_statistics(tmp_path: Path) -> None:
    """A block 11 °C from its string's median raises `explosion.block_outlier` in the real
    rule engine, and `statistics` (its median, 57 KiB of code) is never imported."""
    found = run_fresh("""
        import json, sys
        from pathlib import Path
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        from gateway.clock import ManualClock
        from gateway.config.loader import load_gateway_config
        from gateway.field.sample import Quality, Sample
        from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
        from gateway.rules.engine import RuleEngine

        loaded = load_gateway_config(Path("firmware_configs/telecom_equipment_room.yaml"))
        packs = load_rule_packs(default_rules_dir())
        clock = ManualClock()
        engine = RuleEngine(packs, loaded, clock, ParameterOverrides.for_site(loaded, packs))
        values = {f"bm-batt-01.block{i}_temperature": 24.5 for i in range(1, 5)}
        values["bm-batt-01.block3_temperature"] = 35.5
        for _ in range(310):  # past the rule's 5-minute delay
            engine.on_samples([Sample(p, v, clock.now_ns(), Quality.GOOD)
                               for p, v in values.items()])
            result = {(e.rule, e.subject): e.active for e in engine.evaluate()}
            clock.advance(1.0)
        print(json.dumps({"outlier": result[("explosion.block_outlier", "bm-batt-01")],
                          "statistics": "statistics" in sys.modules}))
    """, tmp_path)
    assert found == {"outlier": True, "statistics": False}


def test_a_request_without_cookies_leaves_http_cookies_out(tmp_path: Path) -> None:
    """A scrape or a health check carries no Cookie header: `http.cookies` waits for the first
    request that does (a browser's), whose cookies are then read as before."""
    found = run_fresh("""
        import json, sys
        import gateway.cli, gateway.supervisor, gateway.panel.server  # a run with its panel
        from gateway.ops.httptypes import Request
        def request(headers):
            return Request(method="GET", path="/metrics", query={}, headers=headers,
                           remote="127.0.0.1")
        seen = {"none": request({}).cookies, "empty": request({"cookie": ""}).cookies}
        seen["before"] = "http.cookies" in sys.modules
        seen["session"] = request({"cookie": "rw_session=abc; theme=dark"}).cookies
        seen["bad"] = request({"cookie": "a=b; expires=x; c"}).cookies
        seen["after"] = "http.cookies" in sys.modules
        print(json.dumps(seen))
    """, tmp_path)
    assert found == {"none": {}, "empty": {}, "before": False,
                     "session": {"rw_session": "abc", "theme": "dark"},
                     "bad": {"a": "b", "expires": "x"},  # a pair that does not parse is skipped
                     "after": True}


def test_cryptography_waits_for_a_key_or_an_envelope(tmp_path: Path) -> None:
    found = run_fresh("""
        import json, sys
        from pathlib import Path
        import gateway.flashing.cli, gateway.flashing.envelope, gateway.flashing.keys
        from gateway.flashing.keys import new_key_pair, public_of, load_private_key
        before = "cryptography" in sys.modules
        private, _ = new_key_pair(Path(sys.argv[2]) / "keys", "probe")
        key = public_of(load_private_key(private))
        print(json.dumps({"before": before, "after": "cryptography" in sys.modules,
                          "key_id": len(key.key_id)}))
    """, tmp_path)
    assert found == {"before": False, "after": True, "key_id": 16}


def test_metrics_content_type_is_prometheus_text_0_0_4() -> None:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

    from gateway.ops.metrics import CONTENT_TYPE

    assert CONTENT_TYPE == CONTENT_TYPE_PLAIN_0_0_4


def test_trusted_keys_in_the_config_do_not_import_cryptography(tmp_path: Path) -> None:
    """`flashing.trusted_keys` is parsed with the config (a length check), the gateway is built
    from it, and cryptography stays out until a signature is verified — which still works."""
    found = run_fresh("""
        import asyncio, base64, json, sys
        from pathlib import Path
        import yaml
        from gateway.config.loader import load_gateway_config
        from gateway.daemon import Gateway
        from gateway.flashing.keys import key_id, load_private_key, new_key_pair, public_of

        site, tmp = Path(sys.argv[1]), Path(sys.argv[2])
        raw = bytes(range(32))
        config = yaml.safe_load(site.read_text())
        config["flashing"] = {"trusted_keys": [
            "ed25519:" + base64.b64encode(raw).decode() + " ops@example"]}
        (tmp / "site.yaml").write_text(yaml.safe_dump(config))
        seen = {}

        async def main() -> None:
            loaded = load_gateway_config(tmp / "site.yaml")
            gateway = Gateway(loaded, state_dir=tmp / "state")
            keys = loaded.config.flashing.trusted()
            seen["keys"] = [k.name for k in keys]
            seen["after_start"] = "cryptography" in sys.modules
            seen["key_id"] = key_id(raw) == keys[0].key_id
            gateway.core.close()

        asyncio.run(main())
        private, _ = new_key_pair(tmp / "keys", "probe")
        signer = load_private_key(private)
        public_of(signer).public_key.verify(signer.sign(b"config"), b"config")  # raises if bad
        seen["verified"] = True
        print(json.dumps(seen))
    """, tmp_path)
    assert found == {"keys": ["ops@example"], "after_start": False, "verified": True,
                     "key_id": True}


AT_REST_LEAVES_OUT = [
    "argparse", "gettext", "gateway.argparser",  # `run`'s command line is read without them
    "ctypes", "_ctypes",  # glibc's heap settings come from the unit; a trim imports them
    "gateway.config.report", "gateway.config.loader", "gateway.config.crosscheck",
    "gateway.config.profiles", "gateway.config.yamlfile",  # loading and checking: the child's
    "gateway.rules.coverage",  # `roomwarden check`'s; the engine's report is rules.unconfigured
    "gateway.flashing.apply", "gateway.flashing.envelope", "gateway.flashing.health_check",
    "gateway.flashing.rejections", "gateway.flashing.trial_terms",
    "gateway.flashing.trial",  # the config applier's: imported at the first apply
    "gateway.reconfigure",  # an apply's own work (gateway.reconfigurable imports it)
    "gateway.drills.live_control", "gateway.drills.signed",  # at the first drill request
]
"""What a running gateway at rest held on 6 Dec 2026 and never used until a config apply, a
live drill, or a command other than `run` (issue 15)."""


def test_a_gateway_at_rest_holds_no_apply_drill_or_command_line_module(tmp_path: Path) -> None:
    """A whole `roomwarden run` (its own entry point, glibc's settings in the environment as
    the unit gives them) polling the simulator, at rest — booted, its rules evaluated, the
    booted config and its profiles kept — holds none of AT_REST_LEAVES_OUT. Then, in the same
    process, a live drill's status and a config apply (health-checked, committed) import what
    they need and work."""
    found = run_fresh("""
        import glob, json, os, signal, socket, subprocess, sys, threading, time
        from pathlib import Path

        site, tmp = Path(sys.argv[1]), Path(sys.argv[2])
        sim_config, state, control = tmp / "sim.yaml", tmp / "state", tmp / "control.sock"
        simulator = subprocess.Popen([sys.executable, "-m", "gateway", "simulate", str(site),
                                      "--write-config", str(sim_config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify.sock"))
        os.environ["NOTIFY_SOCKET"] = str(tmp / "notify.sock")
        told = []  # what the gateway tells systemd, read all along (a full queue blocks it)
        threading.Thread(target=lambda: told.extend(iter(lambda: notify.recv(4096).decode(),
                                                         None)), daemon=True).start()
        seen = {}

        def wait(check, what):
            deadline = time.monotonic() + 60
            while not check():
                if time.monotonic() > deadline:
                    raise SystemExit(f"no {what} within 60 s")
                time.sleep(0.05)

        def at_rest():
            try:
                wait(lambda: any("READY=1" in m.splitlines() for m in told), "READY")
                # the rules evaluated: the booted config and its profiles kept in the store
                wait(lambda: glob.glob(str(state / "config" / "configs" / "v0-*" / "profiles")),
                     "kept profiles")
                seen["at_rest"] = [m for m in LEAVES_OUT if m in sys.modules]
                from gateway.control import request
                drill = list(request(control, {"op": "drill", "action": "status"}))[-1]
                seen["drill"] = [drill["ok"], drill["drill"]]
                text = sim_config.read_text().replace("poll_interval: 200ms",
                                                      "poll_interval: 300ms", 1)
                applied = list(request(control, {"op": "apply", "config": text,
                                                 "author": "test"}))[-1]
                seen["apply"] = [applied["ok"], applied["result"]["state"]]
                seen["after"] = [m for m in LEAVES_OUT if m in sys.modules]
            except BaseException as exc:
                seen["error"] = repr(exc)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        try:
            wait(sim_config.exists, "simulator")
            threading.Thread(target=at_rest, daemon=True).start()
            import gateway.clocksync  # systemd-timesyncd's flag, as on a Raspberry Pi OS gateway
            gateway.clocksync.TIMESYNCD_FLAG = site  # (else the kernel is asked, with ctypes)
            from gateway.cli import main
            seen["code"] = main(["run", str(sim_config), "--state-dir", str(state),
                                 "--socket", str(control), "--panel-port", "0"])
        finally:
            simulator.terminate()
            simulator.wait(10)
        print(json.dumps(seen))
    """.replace("LEAVES_OUT", repr(AT_REST_LEAVES_OUT)), tmp_path,
        env={key: value for key, value in unit_environment().items()
             if key.startswith("MALLOC_")})
    assert "error" not in found, found
    assert found["at_rest"] == []
    assert found["drill"] == [True, None]
    assert found["apply"] == [True, "applied"]
    assert found["code"] == 0
    after = found["after"]
    assert isinstance(after, list) and "argparse" not in after
    assert {"ctypes", "gateway.flashing.apply", "gateway.reconfigure",
            "gateway.drills.live_control"} <= set(after)  # (the names are real)
