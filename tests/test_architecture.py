"""The layout holds: data flows one way, the core never names a CLI flag, functions fit on a screen.

Read from the source with ``ast`` (nothing is imported), so a new import cycle or a flag
leaking into the core fails here, not in review. The same check from a shell::

    python -m pytest tests/test_architecture.py -q
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trdcli"
MODULES = {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.glob("*.py"))}
# The command-line layer: it alone speaks in flags and renders for a terminal.
CLI_LAYER = {"cli", "cli_values", "report", "progress", "__main__"}
MAX_FUNCTION_LINES = 60


def trdcli_imports(tree: ast.Module) -> set[str]:
    """Every trdcli module a module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trdcli."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "trdcli":
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("trdcli."))
    return found


GRAPH = {name: trdcli_imports(tree) for name, tree in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_cycle_finder_finds_a_known_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_module_import_graph_has_no_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_nothing_below_the_cli_imports_the_cli_layer():
    for name, imported in GRAPH.items():
        if name not in CLI_LAYER:
            assert not imported & CLI_LAYER, f"{name} imports {imported & CLI_LAYER}"


def test_the_core_never_imports_fastai_training_wiring_or_the_cli():
    pure = {"schedules", "resize", "cost", "errors", "probes", "cue_conflict", "decode", "data_wait", "photos"}
    for name in pure:
        assert GRAPH[name] <= pure | {"fileio", "models"}, (name, GRAPH[name])


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


@pytest.mark.parametrize("name", sorted(set(MODULES) - CLI_LAYER))
def test_the_core_speaks_of_values_not_flags(name):
    tree = MODULES[name]
    skip = _docstrings(tree)
    flags = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        if FLAG.search(node.value)
    ]
    assert not flags, f"trdcli/{name}.py names CLI flags: {flags}"


def test_functions_fit_on_a_screen():
    """Bodies of at most 60 lines (a Typer command's long signature of options is declarations, not logic)."""
    long = []
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body_lines = node.end_lineno - node.body[0].lineno + 1
                if body_lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {body_lines} lines")
    assert not long, long
