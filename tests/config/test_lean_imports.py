"""What loading a config costs a running gateway (issue 15): no `importlib.metadata` (pydantic's
plugin search and `pydantic.networks` pulled it in, with `email`, `zipfile` and `csv`: 2 MiB),
and the config's own network type validates, serialises and describes itself exactly as
pydantic's `IPvAnyNetwork` it replaces. And what `roomwarden run` leaves out: the other
commands' modules, and `pickle` beside the unpickler of the config check's answer."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from gateway.config.ipnet import IPvAnyNetwork
from tests.ops.test_lazy_imports import run_fresh

RUN_LEAVES_OUT = ["gateway.control_cli", "gateway.field.cli", "gateway.sim", "gateway.sim.cli",
                  "gateway.drills.live_cli", "getpass", "gateway.flashing.cli",
                  "gateway.operator.cli", "gateway.recorder.cli", "pickle"]
"""What `roomwarden run` imported on 6 Dec 2026 and never used (issue 15): the other
commands' parsers and code (~0.14 MiB), and pickle.py's pure-Python pickler (0.18 MiB)."""


def test_a_run_imports_no_other_command_and_no_pickle_module(tmp_path: Path) -> None:
    """A whole `roomwarden run` (the command's own entry point; the site's devices do not
    answer): it boots — its config checked by the child and unpickled —, serves its panel
    (one request: its server is made at the first, gateway.panel.front), runs and stops, and
    none of RUN_LEAVES_OUT was imported."""
    found = run_fresh("""
        import http.client, json, logging, re, sys, threading
        from pathlib import Path
        from gateway.cli import main
        tmp = Path(sys.argv[2])

        def ask(port):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()

        class Panel(logging.Handler):
            def emit(self, record):
                found = re.search(r"event=panel_started .*port=(\\d+)", record.getMessage())
                if found:
                    threading.Thread(target=ask, args=(int(found[1]),), daemon=True).start()

        logging.getLogger("gateway.panel.server").addHandler(Panel())
        logging.getLogger("gateway.panel.server").setLevel(logging.INFO)
        code = main(["run", sys.argv[1], "--duration", "1.5", "--panel-port", "0",
                     "--state-dir", str(tmp / "state"), "--socket", str(tmp / "control.sock")])
        print(json.dumps({"code": code, "ran": "gateway.panel.server" in sys.modules,
                          "loaded": [m for m in LEAVES_OUT if m in sys.modules]}))
    """.replace("LEAVES_OUT", repr(RUN_LEAVES_OUT)), tmp_path)
    assert found == {"code": 0, "ran": True, "loaded": []}


def test_a_loaded_config_leaves_importlib_metadata_out(tmp_path: Any) -> None:
    found = run_fresh("""
        import json, sys
        from pathlib import Path
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        import gateway.strict
        from gateway.rules.config import load_checked_config
        loaded = load_checked_config(Path("firmware_configs/datacenter_lithium_room.yaml"))
        heavy = ["importlib.metadata", "email", "zipfile", "csv", "pydantic.networks"]
        print(json.dumps({
            "loaded": [m for m in heavy if m in sys.modules],
            "no_plugins": sys.modules["pydantic.plugin._loader"] is gateway.strict.NO_PLUGINS,
            "metrics_allow": len(loaded.config.panel.metrics_allow)}))
    """, tmp_path)
    assert found == {"loaded": [], "no_plugins": True, "metrics_allow": 6}


def _outcome(adapter: TypeAdapter[Any], value: object) -> tuple[str, object]:
    try:
        network = adapter.validate_python(value)
    except ValidationError as exc:
        return "error", [(e["type"], e["msg"]) for e in exc.errors()]
    return "ok", (network, adapter.dump_python(network, mode="json"))


_NETWORKS = st.one_of(
    st.ip_addresses().map(str),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(), st.integers(-1, 130)),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(0, 32)),
    st.text(max_size=20),
    st.integers(-1, 2**32),
    st.ip_addresses(),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(_NETWORKS)
def test_the_network_type_validates_as_pydantic_s(value: object) -> None:
    from pydantic.networks import IPvAnyNetwork as PydanticNetwork

    ours, theirs = TypeAdapter(IPvAnyNetwork), TypeAdapter(PydanticNetwork)
    assert _outcome(ours, value) == _outcome(theirs, value)


@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_the_network_type_has_pydantic_s_json_schema(mode: Any) -> None:
    from pydantic.networks import IPvAnyNetwork as PydanticNetwork

    default = (ipaddress.ip_network("10.0.0.0/8"),)
    ours = TypeAdapter(tuple[IPvAnyNetwork, ...])
    theirs = TypeAdapter(tuple[PydanticNetwork, ...])
    assert ours.json_schema(mode=mode) == theirs.json_schema(mode=mode)
    assert ours.dump_json(default) == theirs.dump_json(default) == b'["10.0.0.0/8"]'


def test_a_loaded_config_builds_no_default_section_s_validator(tmp_path: Any) -> None:
    """The config's sections a site leaves out (panel, alarms, the uplink's outbox ...) are
    defaults made at import; they build no validator of their own, and `roomwarden run`
    builds only the config's and the rule packs' (sections both: gateway.config.section;
    issue 15)."""
    found = run_fresh("""
        import json, sys
        from pathlib import Path
        import pydantic
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        from gateway.rules.config import load_checked_config
        load_checked_config(Path("firmware_configs/datacenter_lithium_room.yaml"))
        built, seen = [], set()
        def walk(cls):
            for sub in cls.__subclasses__():
                if sub not in seen:
                    seen.add(sub)
                    if sub.__dict__.get("__pydantic_complete__"):
                        built.append(sub.__name__)
                    walk(sub)
        walk(pydantic.BaseModel)
        from gateway.config.section import _VALIDATORS
        print(json.dumps({"built": sorted(built),
                          "sections": sorted(c.__name__ for c in _VALIDATORS)}))
    """, tmp_path)
    assert found == {"built": [], "sections": ["GatewayConfig", "RulePack"]}


def _model_defaults() -> list[tuple[str, BaseModel]]:
    import gateway.config.site  # noqa: F401  (every config model, with its sections)

    out, seen = [], set()
    todo: list[type[BaseModel]] = [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            todo.append(sub)
            if not sub.__module__.startswith("gateway."):
                continue
            for name, field in sub.model_fields.items():
                if isinstance(field.default, BaseModel):
                    out.append((f"{sub.__qualname__}.{name}", field.default))
    return sorted(out, key=lambda item: item[0])


def test_each_default_section_is_what_validating_nothing_gives() -> None:
    """A default made with `model_construct()` skips validation: it must equal (fields, set
    fields, private state) what `Section()` validates."""
    defaults = _model_defaults()
    assert len(defaults) >= 1  # and the sections' (gateway.config.section): test_section.py
    for where, default in defaults:
        validated = type(default)()
        assert default == validated, where
        assert default.__dict__ == validated.__dict__, where
        assert default.model_fields_set == validated.model_fields_set == set(), where
        assert default.__pydantic_private__ == validated.__pydantic_private__, where
