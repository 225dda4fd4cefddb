"""The layering rule of docs/architecture.md: imports run only downward, and never in circles.

Every module of covid_tl belongs to one layer (a new module must be placed here, which is the
point: its author decides where it sits). A module may import its own layer and the layers
below it; within a layer, the import graph has no cycle. Imports inside functions count too:
a deferred import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

#: Bottom to top: the packages under covid_tl/, each a layer (docs/architecture.md says what
#: each holds). A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("covid_tl.core",)),
    ("stats", ("covid_tl.stats",)),
    ("reporting", ("covid_tl.reporting",)),
    ("runtime", ("covid_tl.runtime",)),
    ("preprocess", ("covid_tl.preprocess",)),
    ("data", ("covid_tl.data",)),
    ("models", ("covid_tl.models",)),
    ("cam", ("covid_tl.cam",)),
    ("engine", ("covid_tl.engine",)),
    ("audit", ("covid_tl.audit",)),
    ("tasks", ("covid_tl.tasks",)),
]


def layer_of(module: str) -> int | None:
    if module == "covid_tl":
        return 0
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, module: str) -> set[str]:
    """covid_tl modules a file imports (absolute or relative, at any depth of the file)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("covid_tl"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("covid_tl"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the covid_tl modules it imports. An import of a package itself (`from
    covid_tl.data.synthetic import streams`) is an edge to its __init__ as well, even from inside
    the package: an __init__ that imported a module doing so would be a cycle by Python's rules."""
    files = {module_name(p, root): p for p in (root / "covid_tl").rglob("*.py")}
    return {m: {i for i in imports_of(p, m) if i in files and i != m} for m, p in files.items()}


def package_of(module: str, packages: set[str]) -> str:
    """The package a module sits in (a package's __init__: the package itself)."""
    return module if module in packages else module.rsplit(".", 1)[0]


def package_graph(graph: dict[str, set[str]], root: Path) -> dict[str, set[str]]:
    """Package -> the other packages its modules import (a subpackage is a package of its own)."""
    packages = {module_name(p, root) for p in (root / "covid_tl").rglob("__init__.py")}
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        home = package_of(module, packages)
        edges.setdefault(home, set()).update(package_of(t, packages) for t in targets)
        edges[home].discard(home)
    return edges


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[layer_of(m)][0]}) imports {i} ({LAYERS[layer_of(i)][0]})"
            for m, targets in graph.items() for i in sorted(targets) if layer_of(i) > layer_of(m)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in import_graph(ROOT) if layer_of(m) is None)
    assert not unplaced, f"place these modules in a layer (tests/test_layers.py, docs/architecture.md): {unplaced}"


def test_imports_run_only_downward():
    graph = import_graph(ROOT)
    assert all(layer_of(m) is not None for m in graph)
    assert upward_imports(graph) == []


def test_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_no_import_cycle_between_packages():
    assert cycles(package_graph(import_graph(ROOT), ROOT)) == []


def test_the_package_root_holds_only_the_layers():
    """`ls covid_tl` shows the layers: each entry is one of LAYERS' packages (or __init__.py)."""
    entries = {p.name for p in (ROOT / "covid_tl").iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py"} | {prefixes[0].split(".")[1] for _, prefixes in LAYERS}


def test_no_package_init_imports_covid_tl():
    """A package's __init__ runs before any of its modules: one that imported them (a CLI, say)
    would run it for every user of the package, and cycle with modules importing the package."""
    inits = {module_name(p, ROOT): p for p in (ROOT / "covid_tl").rglob("__init__.py")}
    assert {m: sorted(imports_of(p, m)) for m, p in inits.items() if imports_of(p, m)} == {}


def test_a_model_knows_no_dataset_and_a_dataset_no_model():
    graph = import_graph(ROOT)
    crossing = [f"{m} imports {i}" for m, targets in graph.items() for i in targets
                if {m.split(".")[1], i.split(".")[1]} == {"models", "data"}]
    assert crossing == []


def test_checks_catch_an_upward_import_and_a_cycle():
    graph = {"covid_tl.data.a": {"covid_tl.cam.b"}, "covid_tl.cam.b": set(),
             "covid_tl.models.x": {"covid_tl.models.y"}, "covid_tl.models.y": {"covid_tl.models.z"},
             "covid_tl.models.z": {"covid_tl.models.x"}}
    assert upward_imports(graph) == ["covid_tl.data.a (data) imports covid_tl.cam.b (cam)"]
    assert cycles(graph) == [["covid_tl.models.x", "covid_tl.models.y", "covid_tl.models.z"]]


def test_checks_catch_a_package_cycle_and_an_init_cycle(tmp_path):
    """Two packages whose modules import each other's (no module cycle), and an __init__ that
    imports a module importing the package back (the synthetic package's, before #20)."""
    for package in ("covid_tl", "covid_tl/p", "covid_tl/q", "covid_tl/s"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "covid_tl/p/a.py").write_text("from covid_tl.q import b\n")
    (tmp_path / "covid_tl/q/b.py").write_text("")
    (tmp_path / "covid_tl/q/c.py").write_text("from covid_tl.p.d import x\n")
    (tmp_path / "covid_tl/p/d.py").write_text("")
    (tmp_path / "covid_tl/s/__init__.py").write_text("from covid_tl.s.cli import main\n")
    (tmp_path / "covid_tl/s/cli.py").write_text("from covid_tl.s import e\n")
    (tmp_path / "covid_tl/s/e.py").write_text("")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["covid_tl.s", "covid_tl.s.cli"]]
    assert cycles(package_graph(graph, tmp_path)) == [["covid_tl.p", "covid_tl.q"]]


@pytest.mark.parametrize("source, module, expected", [
    ("from covid_tl.data import manifest\n", "covid_tl.cam.x", {"covid_tl.data", "covid_tl.data.manifest"}),
    ("def f():\n    from ..core.labels import LABELS\n", "covid_tl.cam.x", {"covid_tl.core.labels", "covid_tl.core.labels.LABELS"}),
    ("import covid_tl.core.errors\n", "covid_tl.x", {"covid_tl.core.errors"}),
])
def test_imports_are_found_at_any_depth(tmp_path, source, module, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert imports_of(path, module) == expected
