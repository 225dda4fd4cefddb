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

#: Bottom to top. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("bottom", ("covid_tl.errors", "covid_tl.config_history", "covid_tl.files", "covid_tl.formatting", "covid_tl.results", "covid_tl.labels", "covid_tl.metrics", "covid_tl.plots", "covid_tl.grid",
                "covid_tl.console", "covid_tl.config_check", "covid_tl.run_checks", "covid_tl.run_dir",
                "covid_tl.run_guard", "covid_tl.torch_files", "covid_tl.tracking", "covid_tl.provenance", "covid_tl.page",
                "covid_tl.operating_point", "covid_tl.calibration")),
    ("preprocess", ("covid_tl.preprocess",)),
    ("data", ("covid_tl.data",)),
    ("models", ("covid_tl.models",)),
    ("cam", ("covid_tl.cam",)),
    ("build", ("covid_tl.build", "covid_tl.evaluation", "covid_tl.model_card")),
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
    """Module -> the covid_tl modules it imports. A module's own enclosing packages are left out:
    `from covid_tl.data.synthetic import streams` inside that package needs `streams`, and Python
    runs the package's __init__ (already under way) as a matter of course, not as a design choice."""
    files = {module_name(p, root): p for p in (root / "covid_tl").rglob("*.py")}
    return {m: {i for i in imports_of(p, m) if i in files and i != m and not m.startswith(i + ".")}
            for m, p in files.items()}


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


def test_checks_catch_an_upward_import_and_a_cycle():
    graph = {"covid_tl.data.a": {"covid_tl.cam.b"}, "covid_tl.cam.b": set(),
             "covid_tl.models.x": {"covid_tl.models.y"}, "covid_tl.models.y": {"covid_tl.models.z"},
             "covid_tl.models.z": {"covid_tl.models.x"}}
    assert upward_imports(graph) == ["covid_tl.data.a (data) imports covid_tl.cam.b (cam)"]
    assert cycles(graph) == [["covid_tl.models.x", "covid_tl.models.y", "covid_tl.models.z"]]


@pytest.mark.parametrize("source, module, expected", [
    ("from covid_tl.data import manifest\n", "covid_tl.cam.x", {"covid_tl.data", "covid_tl.data.manifest"}),
    ("def f():\n    from ..labels import LABELS\n", "covid_tl.cam.x", {"covid_tl.labels", "covid_tl.labels.LABELS"}),
    ("import covid_tl.errors\n", "covid_tl.x", {"covid_tl.errors"}),
])
def test_imports_are_found_at_any_depth(tmp_path, source, module, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert imports_of(path, module) == expected
