"""The layout's rules, checked on the code itself: files and functions short enough to read,
stage scripts that only parse, load params and make one call, and no import cycle between the
project's modules (counting lazy imports: a cycle there is a design knot even when Python
tolerates it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from test_dvc_yaml import REPO, SRC, stage_deps

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_STAGE_LINES = 45
CODE = sorted((REPO / "src").rglob("*.py")) + sorted((REPO / "pipeline").glob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_no_file_is_over_the_limit():
    long = {
        _relative(p): n for p in CODE if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_over_the_limit():
    long = {}
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{_relative(path)}:{node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("script", sorted((REPO / "pipeline").glob("*.py")), ids=lambda p: p.stem)
def test_stage_scripts_are_thin(script):
    assert len(script.read_text().splitlines()) <= MAX_STAGE_LINES


def import_graph() -> dict[Path, set[Path]]:
    """Project file -> the project files importing it runs, lazy imports included. Importing
    ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``, except the packages the importer is inside
    (they are already running when it is)."""
    graph = {}
    for path in sorted((REPO / "src").rglob("*.py")):
        edges = set()
        for module in stage_deps.imported_modules(path, SRC):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):
                found = stage_deps.module_file(".".join(parts[:depth]), SRC)
                inside = found is not None and found.name == "__init__.py"
                if inside and path.is_relative_to(found.parent):
                    continue
                if found is not None and found != path:
                    edges.add(found)
        graph[path] = edges
    return graph


def find_cycle(graph: dict[Path, set[Path]]) -> list[Path] | None:
    """One cycle of ``graph`` as a path [a, b, ..., a], or None."""
    state: dict[Path, int] = {}  # 1: on the current path, 2: done
    stack: list[Path] = []

    def visit(node: Path) -> list[Path] | None:
        state[node] = 1
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return stack[stack.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_planted_one():
    a, b, c = Path("a"), Path("b"), Path("c")
    assert find_cycle({a: {b}, b: {c}, c: set()}) is None
    assert find_cycle({a: {b}, b: {c}, c: {a}}) == [a, b, c, a]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(_relative(p) for p in cycle)


# The packages in the order data flows through them; a flat module (a foundation: config,
# fileio, tracking, manifold, plots, inference, ...) may be imported by any of them.
FLOW = {
    "data": 1,
    "models": 2,
    "training": 3,
    "tuning": 4,
    "evaluation": 5,
    "clustering": 6,
    "export": 7,
    "anomaly": 8,  # anomaly@V fits and converts its scorer after export@V
    "reporting": 9,
    "services": 10,
    "benchmarks": 11,
}


def test_imports_run_one_way_in_the_order_data_flows():
    # An import from a later package into an earlier one makes an edit of the later stage's
    # code invalidate the earlier stages (dvc.yaml's deps are the import closures).
    package = SRC / "autoencoders"
    upward = []
    for path, imported in import_graph().items():
        parts = path.relative_to(package).parts
        if len(parts) < 2:  # a foundation module: no package of the flow
            continue
        for target in imported:
            other = target.relative_to(package).parts
            if len(other) > 1 and FLOW.get(other[0], 0) > FLOW.get(parts[0], 0):
                upward.append(f"{'/'.join(parts)} -> {'/'.join(other)}")
    assert not upward, f"imports against the data flow: {sorted(upward)}"
