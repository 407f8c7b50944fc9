"""The arrows point one way: no import circles, nodes share helpers only through nodes/common.py,
services never import nodes, and evals never lean on the test suite (it is not installed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("agent.knowledge", "agent.llm", "agent.sidecar", "agent.artifacts", "agent.planning", "agent.sections")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    files = [*(ROOT / "agent").rglob("*.py"), *(ROOT / "evals").rglob("*.py"), ROOT / "graph.py"]
    return {_module_name(p): p for p in files}


def _imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """(module, imported name) for every import in the file, function-level ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found += [(base, a.name) for a in node.names]
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, str | None]]]]:
    sources = _sources()
    raw = {name: _imports(name, path) for name, path in sources.items()}

    def resolve(module: str, item: str | None) -> str | None:
        if item and f"{module}.{item}" in sources:
            return f"{module}.{item}"  # `from package import module`
        while module and module not in sources:
            module = module.rpartition(".")[0]
        return module or None

    edges = {name: {t for m, i in raw[name] if (t := resolve(m, i)) and t != name} for name in sources}
    return edges, raw


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_the_graph_is_read(graph):
    edges, _ = graph
    assert {"graph", "agent.context", "agent.nodes.sections", "evals.cli"} <= set(edges)
    assert "agent.nodes.common" in edges["agent.nodes.sections"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles(graph):
    edges, _ = graph
    assert _cycles(edges) == []


def test_nodes_share_helpers_only_through_common(graph):
    edges, _ = graph
    borrowed = [
        (name, target)
        for name, targets in edges.items()
        if name.startswith("agent.nodes.")
        for target in targets
        if target.startswith("agent.nodes.") and target != "agent.nodes.common"
    ]
    assert borrowed == []


def test_services_never_import_nodes(graph):
    edges, _ = graph
    services = [n for n in edges if any(n == s or n.startswith(s + ".") or n.startswith(s + "_") for s in SERVICES)]
    assert "agent.llm_tasks" in services and "agent.knowledge.client" in services
    assert [(n, t) for n in services for t in edges[n] if t.startswith("agent.nodes")] == []


def test_shipped_code_never_imports_the_test_suite(graph):
    _, raw = graph
    assert any(n.startswith("evals.") for n in raw)
    leaning = [(n, m) for n, imports in raw.items() for m, _ in imports if m.split(".")[0] == "tests"]
    assert leaning == []
