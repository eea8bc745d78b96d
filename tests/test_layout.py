"""The layout keeps its promises (docs/guide.md): no import cycle, a core that imports
neither asyncio nor Django, small modules.

Imports are read from the source (``ast``), wherever they stand: an import inside a
function counts, one under ``if TYPE_CHECKING:`` does not (it never runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "tidings"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(path: Path, here: str | None = None) -> set[str]:
    """Every module ``path`` imports when it runs (absolute names; a name taken from a
    module appears as ``module.name`` too, since it may be a submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    here = here or module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from tidings import api` imports the module tidings.api
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    return {
        name: {m for m in imported(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
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
            connect(v)
    return found


def test_the_checker_sees_a_cycle_and_a_function_level_import(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    hidden = tmp_path / "x.py"
    hidden.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import tidings.api\n"
        "def f():\n    from tidings.server import node\n"
    )
    assert "tidings.server.node" in imported(hidden, "tidings.x")
    assert "tidings.api" not in imported(hidden, "tidings.x")


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_nothing_imports_the_node_back():
    """The node's own parts (what it imports) never import it, however indirectly."""
    edges = graph()
    node = "tidings.server.node"

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for m in edges[todo.pop()]:
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    parts = reach(node)
    assert node not in parts
    assert not [p for p in parts if node in reach(p)]


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("tidings.core")))
def test_the_core_imports_no_io_and_nothing_above_it(name):
    outside = {
        m
        for m in imported(MODULES[name])
        if m.split(".")[0] in {"asyncio", "django", "asgiref", "socket", "redis", "psycopg"}
        or (m in MODULES and not m.startswith("tidings.core"))
    }
    assert outside <= {"tidings", "tidings.exceptions"}, outside


def test_modules_are_small():
    big = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}
