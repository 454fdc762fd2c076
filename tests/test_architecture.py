"""The layout holds: a folder per layer, data flows one way, the core never names a CLI flag, functions fit.

Read from the source with ``ast`` (nothing is imported), so a new import cycle or a flag
leaking into the core fails here, not in review. The same check from a shell::

    python -m pytest tests/test_architecture.py -q
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trdcli"
# Modules by dotted name under trdcli ("core.schedules"); the package's own files are "__init__" and "__main__".
MODULES = {
    ".".join(path.relative_to(PACKAGE).with_suffix("").parts): ast.parse(path.read_text(), str(path))
    for path in sorted(PACKAGE.rglob("*.py"))
}
# The layers, one folder each, in the order data flows: a layer imports only layers to its right.
LAYERS = ("cli", "plan", "evaluate", "run", "trackers", "callbacks", "data", "core")
MAX_FUNCTION_LINES = 60
# Third-party packages each layer may import; the standard library is always allowed.
CORE_THIRD_PARTY = {"torch", "numpy"}
CLI_ONLY = {"typer", "rich"}


def layer(module: str) -> str:
    """The folder a module lives in ("core"), or "" for the package's own __init__ and __main__."""
    return module.split(".")[0] if "." in module else ""


def _resolve(name: str) -> str | None:
    """The module of MODULES that a dotted name under trdcli names (a module, or a name in a package's __init__)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def trdcli_imports(tree: ast.Module) -> set[str]:
    """Every trdcli module a module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trdcli."):
            base = node.module.removeprefix("trdcli.")
            for alias in node.names:
                found.add(_resolve(f"{base}.{alias.name}") or base)
        elif isinstance(node, ast.ImportFrom) and node.module == "trdcli":
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.Import):
            found.update(_resolve(a.name.removeprefix("trdcli.")) for a in node.names if a.name.startswith("trdcli."))
    found.discard(None)
    return found


def third_party_imports(tree: ast.Module) -> set[str]:
    """Top-level packages a module imports that are neither trdcli nor the standard library."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"trdcli", "__future__"}}


GRAPH = {name: trdcli_imports(tree) for name, tree in MODULES.items()}
LAYER_GRAPH: dict[str, set[str]] = {}
for _name, _deps in GRAPH.items():
    if layer(_name):
        LAYER_GRAPH.setdefault(layer(_name), set()).update(
            layer(d) for d in _deps if layer(d) not in ("", layer(_name))
        )


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


def test_every_module_lives_in_a_layer_folder():
    assert set(MODULES) - {"__init__", "__main__"} == {m for m in MODULES if layer(m) in LAYERS}
    assert {layer(m) for m in MODULES if layer(m)} == set(LAYERS)


def test_no_cycle_between_layers():
    assert find_cycle(LAYER_GRAPH) is None, " -> ".join(find_cycle(LAYER_GRAPH))


def test_each_layer_imports_only_the_layers_below_it():
    for name, deps in GRAPH.items():
        if not layer(name):
            continue
        below = set(LAYERS[LAYERS.index(layer(name)) :])
        wrong = {dep for dep in deps if layer(dep) and layer(dep) not in below}
        assert not wrong, f"{name} imports {sorted(wrong)}, a layer above it"


def test_the_core_imports_only_the_core_torch_and_numpy():
    for name, tree in MODULES.items():
        if layer(name) == "core":
            assert {layer(dep) for dep in GRAPH[name]} <= {"core"}, (name, GRAPH[name])
            assert third_party_imports(tree) <= CORE_THIRD_PARTY, (name, third_party_imports(tree))


def test_only_the_cli_imports_typer_and_rich():
    for name, tree in MODULES.items():
        if layer(name) != "cli":
            assert not third_party_imports(tree) & CLI_ONLY, (name, third_party_imports(tree) & CLI_ONLY)


def test_the_layer_rules_catch_a_violation():
    # The checks above are only as good as the import reader: it must see a core module reaching up.
    tree = ast.parse("def f():\n    from trdcli.run.models import build_model\n    import typer\n")
    assert trdcli_imports(tree) == {"run.models"}
    assert third_party_imports(tree) == {"typer"}
    assert _resolve("core.schedules.TRDSchedule") == "core.schedules"


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


@pytest.mark.parametrize("name", sorted(m for m in MODULES if layer(m) != "cli" and m != "__main__"))
def test_the_core_speaks_of_values_not_flags(name):
    tree = MODULES[name]
    skip = _docstrings(tree)
    flags = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        if FLAG.search(node.value)
    ]
    assert not flags, f"trdcli/{name.replace('.', '/')}.py names CLI flags: {flags}"


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


def test_trd_callback_has_one_job_on_a_few_screens():
    # Its one job is the size of each step; counting is ComputeMeter's and BatchNorm its callbacks'.
    (node,) = [n for n in ast.walk(MODULES["callbacks.trd"]) if isinstance(n, ast.ClassDef) and n.name == "TRDCallback"]
    assert node.end_lineno - node.lineno + 1 <= 80
    methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    assert not methods & {"summary", "groups", "resume_from", "after_fit"}, methods


def test_every_document_the_code_and_tests_cite_is_in_the_repository():
    # The code cited "design.md §2" and "§4", a file outside the repository: a reader of the code
    # could not follow the reference. Every *.md named in a source or test file must be here.
    root = PACKAGE.parent
    written = {"trd_summary.md"}  # a file trd writes (an MLflow artifact), not a document it cites
    cited = {}
    sources = [*PACKAGE.rglob("*.py"), *(root / "tests").glob("*.py"), *(root / "benchmarks").glob("*.py")]
    for path in [p for p in sources if p != Path(__file__).resolve()]:
        for name in re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b", path.read_text()):
            cited.setdefault(name, path.relative_to(root))
    here = {name for name in cited if (root / name).exists() or (root / "docs" / name).exists()}
    missing = {name: str(where) for name, where in cited.items() if name not in written | here}
    assert cited and not missing


def test_each_command_module_fits_on_a_few_screens():
    # cli/app.py was 1,095 lines with every command in it; each command is now its own module.
    sizes = {name: len(ast.unparse(tree).splitlines()) for name, tree in MODULES.items() if name.startswith("cli.")}
    commands = {name: n for name, n in sizes.items() if name.endswith(("_command", "_commands"))}
    assert len(commands) >= 7 and max(commands.values()) <= 300, commands
    assert sizes["cli.app"] <= 40
