"""What a gateway with a panel loads (issue 15): the incident report's renderer (`html` and its
entity tables) only at the first report asked for, and no `importlib.resources` (with
`zipfile`) for the panel's static files — which are still exactly the package's files."""

from __future__ import annotations

from pathlib import Path

from tests.ops.test_lazy_imports import run_fresh


def test_the_panel_loads_no_report_renderer_and_no_zipfile(tmp_path: Path) -> None:
    found = run_fresh("""
        import json, sys
        import gateway.cli, gateway.supervisor  # what `roomwarden run` imports
        from gateway.panel import server
        files = server._load_static()
        lean = ["html", "html.entities", "gateway.recorder.report", "zipfile",
                "importlib.resources"]
        loaded = [m for m in lean if m in sys.modules]
        from importlib import resources
        root = resources.files("gateway.panel").joinpath("static")
        same = all(body == root.joinpath(name).read_bytes()
                   for path, (name, _) in server._STATIC.items()
                   for body in [files[path][0]])
        print(json.dumps({"loaded": loaded, "files": sorted(files) == sorted(server._STATIC),
                          "same": same}))
    """, tmp_path)
    assert found == {"loaded": [], "files": True, "same": True}


def test_a_report_loads_its_renderer(tmp_path: Path) -> None:
    found = run_fresh("""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, str(Path.cwd()))  # the repository: the test's incident record
        from gateway.panel.events import report_of
        from gateway.recorder.store import IncidentStore
        from tests.panel.test_events import record
        store = IncidentStore(Path(sys.argv[2]) / "incidents")
        store.save(record("20261203T120000Z-tx-9"))
        before = "gateway.recorder.report" in sys.modules
        reply = report_of(store, "20261203T120000Z-tx-9")
        print(json.dumps({"before": before, "after": "gateway.recorder.report" in sys.modules,
                          "status": reply.status, "html": reply.content_type}))
    """, tmp_path)
    assert found == {"before": False, "after": True, "status": 200, "html": "text/html"}
