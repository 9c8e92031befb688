"""The layers hold: no import cycles in `gateway`, the wire contract's leaf package imports
nothing else of `gateway`, and the central ingest reaches no edge module (issue 16).

The graph is read from the source with `ast`, without importing anything: every `import` and
`from … import` counts, also inside functions (a lazy import still ties two modules together);
only imports under `if TYPE_CHECKING:` are left out, since they never run. `from pkg import
name` counts as an import of `pkg.name` when that is a module, else of `pkg`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gateway"

EDGE = ("gateway.alarms", "gateway.rules", "gateway.field", "gateway.flashing",
        "gateway.panel", "gateway.actions", "gateway.safety", "gateway.daemon",
        "gateway.drills", "gateway.sim", "gateway.recorder")
"""What runs on the gateway only: the central ingest must load none of it."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement except those in an `if TYPE_CHECKING:` body."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def _owning_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports_of(module: str) -> frozenset[str]:
    """The gateway modules `module` imports (directly)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names)
    owned = {_owning_module(n) for n in names if n.split(".")[0] == "gateway"}
    return frozenset(m for m in owned if m is not None and m != module)


def reachable(start: list[str], skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """Every module imported, transitively, from `start` (not through a module of `skip`):
    module -> the module that imports it on one path (for the failure message)."""
    via: dict[str, str] = {m: "" for m in start}
    todo = list(start)
    while todo:
        module = todo.pop()
        if module in skip:
            continue
        for dep in imports_of(module):
            if dep not in via:
                via[dep] = module
                todo.append(dep)
    return via


def _path_to(module: str, via: dict[str, str]) -> str:
    chain = [module]
    while via[chain[-1]]:
        chain.append(via[chain[-1]])
    return " <- ".join(chain)


def cycles(nodes: Iterable[str], edges: Callable[[str], Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, deps = work[-1]
            for dep in deps:
                if dep not in index:
                    index[dep] = low[dep] = len(index)
                    stack.append(dep)
                    on_stack.add(dep)
                    work.append((dep, iter(sorted(edges(dep)))))
                    break
                if dep in on_stack:
                    low[node] = min(low[node], index[dep])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_graph_is_read() -> None:
    """The walk sees real edges (a broken walk would pass everything below)."""
    assert "gateway.field.poll" in imports_of("gateway.field.bus_loop")
    assert "gateway.contract.enums" in imports_of("gateway.contract.wire")
    assert "gateway.contract.wire" in reachable(["gateway.ingest.service"])
    assert len(MODULES) > 100


def test_cycles_are_found() -> None:
    """The cycle finder itself, on a made-up graph (the real one has none)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "f"}, "f": {"d"}, "g": {"a"}}
    assert cycles(graph, graph.__getitem__) == [["a", "b", "c"], ["d", "f"]]
    assert cycles(graph, lambda _: ()) == []


def test_no_import_cycles() -> None:
    found = cycles(MODULES, imports_of)
    lines = [f"{m} imports {sorted(imports_of(m) & set(c))}" for c in found for m in c]
    assert not found, "import cycles:\n" + "\n".join(lines)


LEAVES = frozenset({"gateway.strict", "gateway.records"})
"""Modules outside the contract package that import nothing of gateway (the strict model base,
the dataclass maker)."""


def test_the_contract_is_a_leaf() -> None:
    leaf = [m for m in MODULES if m == "gateway.contract" or m.startswith("gateway.contract.")]
    assert leaf
    assert all(not imports_of(m) for m in LEAVES)
    outside = {m: sorted(d for d in imports_of(m)
                         if not d.startswith("gateway.contract") and d not in LEAVES)
               for m in leaf}
    assert not any(outside.values()), f"gateway.contract imports other modules: {outside}"


def _edge_reached(start: str) -> str:
    roots = [m for m in MODULES if m == start or m.startswith(start + ".")]
    via = reachable(roots)
    edge = sorted(m for m in via if any(m == e or m.startswith(e + ".") for e in EDGE))
    return "\n".join(_path_to(m, via) for m in edge)


@pytest.mark.parametrize("start", ["gateway.ingest", "gateway.dashboards",
                                   "gateway.contract.wire", "gateway.config.yamlfile"])
def test_no_edge_module_is_reached(start: str) -> None:
    """The central ingest and dashboards, the wire contract and the generic config loading
    load nothing of the edge (the ingest's settings use gateway.config.yamlfile, which
    imports no site schema)."""
    edge = _edge_reached(start)
    assert not edge, f"{start} reaches edge modules:\n{edge}"


def test_an_edge_module_would_be_found() -> None:
    """The edge walk itself: the gateway's config loader does reach feature packages."""
    assert "gateway.flashing.keys" in _edge_reached("gateway.config.loader")


SECTIONS = frozenset({"gateway.uplink.settings", "gateway.rules.section",
                      "gateway.recorder.settings", "gateway.operator.settings",
                      "gateway.flashing.keys", "gateway.panel.passwords"})
"""The features' settings sections the site config is built from (they import only the
leaves and the generic config), and the parsers of the values it holds that a feature reads
(a panel user's password hash: parsed by the check as the panel parses it at start)."""


def test_the_site_config_reaches_only_the_settings_sections() -> None:
    """Loading a site config loads no feature's runtime: outside the config package and the
    leaves it reaches only the sections, and those reach no other feature module."""
    via = reachable(["gateway.config.loader"])
    features = sorted(m for m in via if not m.startswith(("gateway.config.", "gateway.contract"))
                      and m not in LEAVES | SECTIONS | {"gateway.storage"})
    assert not features, "\n".join(_path_to(m, via) for m in features)
    assert set(via) >= SECTIONS


OWN_MODEL_BASE = {"gateway.strict": "the base itself"}
"""Modules allowed a class that derives from pydantic's BaseModel directly."""


def test_models_derive_from_the_one_strict_base() -> None:
    """Every pydantic model derives (through its family's base) from gateway.strict's
    StrictModel: unknown keys are errors and models are immutable everywhere."""
    direct = sorted(
        f"{module}.{node.name}" for module, path in MODULES.items() if module not in OWN_MODEL_BASE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(getattr(b, "id", getattr(b, "attr", None)) == "BaseModel" for b in node.bases))
    assert not direct, f"models on pydantic's BaseModel instead of StrictModel: {direct}"


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it is bound to by the module's imports."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _dotted(expr: ast.expr, bound: dict[str, str]) -> str | None:
    attrs: list[str] = []
    while isinstance(expr, ast.Attribute):
        attrs.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return ".".join([bound.get(expr.id, expr.id), *reversed(attrs)])


def calls_in(source: str) -> set[str]:
    """The dotted names of what `source` calls, through its imports (`import sqlite3 as db`
    then `db.connect()` is `sqlite3.connect`; `from paho.mqtt import client` then
    `client.Client()` is `paho.mqtt.client.Client`)."""
    tree = ast.parse(source)
    bound = _aliases(tree)
    return {name for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (name := _dotted(node.func, bound)) is not None}


def subclassed_in(source: str) -> set[str]:
    """The dotted names of the classes `source` subclasses, through its imports."""
    tree = ast.parse(source)
    bound = _aliases(tree)
    return {name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            for base in node.bases if (name := _dotted(base, bound)) is not None}


def callers_of(target: str) -> list[str]:
    """Modules that call `target` or subclass it (a subclass builds one too)."""
    found = []
    for module, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if target in calls_in(source) or target in subclassed_in(source):
            found.append(module)
    return sorted(found)


def test_calls_are_found() -> None:
    """The call finder itself, through the import forms the checks below rely on."""
    assert calls_in("import sqlite3 as db\ndef f():\n    db.connect(':memory:')\n") == {
        "sqlite3.connect"}
    assert calls_in("from sqlite3 import connect\nconnect('x')\n") == {"sqlite3.connect"}
    assert "paho.mqtt.client.Client" in calls_in(
        "from paho.mqtt import client\nc = client.Client(2)\n")
    assert "paho.mqtt.client.Client" in calls_in(
        "import paho.mqtt.client\npaho.mqtt.client.Client(2)\n")
    assert calls_in("import sqlite3\nsqlite3.Connection\n") == set()
    assert subclassed_in("import paho.mqtt.client as mqtt\nclass C(mqtt.Client): pass\n") == {
        "paho.mqtt.client.Client"}


@pytest.mark.parametrize(("target", "owner"), [
    ("sqlite3.connect", "gateway.storage"),
    ("paho.mqtt.client.Client", "gateway.mqtt_client"),
])
def test_one_place_builds_each_kind_of_connection(target: str, owner: str) -> None:
    """SQLite is opened and tuned in one module (mode 0600, WAL, durability named per store),
    and one module builds paho clients (TLS, credentials, reconnect policy): issue 16."""
    assert callers_of(target) == [owner]


def test_only_the_strict_base_sets_the_strict_config() -> None:
    """`extra` and `frozen` are set once, on gateway.strict's StrictModel: no family copies
    the base's config (a family adds other keys: docstrings, strict types)."""
    setters = sorted(
        module for module, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ConfigDict"
        and any(k.arg in ("extra", "frozen") for k in node.keywords))
    assert setters == ["gateway.strict"]


LINE_BUDGET = 400
"""Lines a module may have (issue 16: one job per module, about 400 lines or fewer)."""

OVER_BUDGET: dict[str, str] = {}
"""Modules allowed past the budget, each with why (none today: issue 16 split the last two);
an entry names an issue and goes once its module fits. The test below fails for any other
module past the budget."""


def _lines(module: str) -> int:
    return len(MODULES[module].read_text(encoding="utf-8").splitlines())


def test_modules_fit_the_line_budget() -> None:
    over = {m: _lines(m) for m in sorted(MODULES) if m not in OVER_BUDGET
            and _lines(m) > LINE_BUDGET}
    assert not over, (f"modules over {LINE_BUDGET} lines (split by job, or name them in "
                      f"OVER_BUDGET with a reason): {over}")


def test_the_budget_exceptions_name_real_modules() -> None:
    assert all(m in MODULES and reason for m, reason in OVER_BUDGET.items())


def test_every_module_names_its_job() -> None:
    """Every module opens with a docstring (issue 16: its one job, named there)."""
    silent = sorted(m for m, path in MODULES.items()
                    if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))))
    assert not silent, f"modules without a docstring: {silent}"
