"""The house's one-way floors: no module of stt_server imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[2] / "stt_server"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The stt_server modules `path` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> nx.DiGraph:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in paths.items():
        graph.add_node(name)
        for target in imports_of(path, set(paths)):
            if target != name:
                graph.add_edge(name, target)
    return graph


def test_the_import_graph_has_no_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the whole package was read
    assert list(nx.simple_cycles(graph)) == []


def test_facts_at_the_bottom_import_nothing_above_them() -> None:
    graph = import_graph()
    bottom = {"stt_server.audio": set(), "stt_server.errors": {"stt_server.audio"}}
    for module, allowed in bottom.items():
        assert set(graph.successors(module)) <= allowed, module
    # The CLI is the top: nothing imports it but `python -m stt_server`.
    assert set(graph.predecessors("stt_server.cli")) == {"stt_server.__main__"}
