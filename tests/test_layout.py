"""The package's shape: imports run downward through the layers, no cycles, no oversized module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import search
import space
from tests.support import REPO, package_modules

MAX_LINES = 300
# Lower layers never import higher ones; tune, model and dashboard do not import each other.
LAYERS = (
    ("search.errors", "search.paths", "search.defaults", "search.throughput", "search.plan", "search.stats"),
    ("space",),
    (
        "search.device",
        "search.data",
        "search.augment",
        "search.optim",
        "search.runtime",
        "search.graphs",
        "search.train",
        "search.speed",
        "search.metrics",
    ),
    ("search.store",),
    ("search.tune", "search.model", "search.dashboard"),
    ("search.cli",),
)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from pkg import mod" depends on the module pkg.mod; "from mod import name" on mod.
            subs = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known]
            names = subs if len(subs) == len(node.names) else [node.module, *subs]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def _layer(module: str) -> tuple[int, str]:
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return rank, prefix
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    graph = {name: _imports(path, known) - {name} for name, path in modules.items()}
    # A package's __init__ is imported with each of its modules; the public face (search) is lazy.
    return {name: {d for d in deps if d != "search"} for name, deps in graph.items()}


def test_imports_run_downward_through_the_layers() -> None:
    wrong = []
    for module, deps in _graph().items():
        if module == "search":
            continue
        rank, package = _layer(module)
        for dep in deps:
            dep_rank, dep_package = _layer(dep)
            if dep_rank > rank or (dep_rank == rank and dep_package != package and rank == 4):
                wrong.append(f"{module} -> {dep}")
    assert not wrong, wrong


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(dep) :], dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_is_over_300_lines() -> None:
    long = {
        name: n for name, path in package_modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_public_face_lists_what_it_exports_and_loads_each() -> None:
    assert sorted(search.__all__) == sorted(search._EXPORTS)
    for name in search.__all__:
        assert getattr(search, name) is not None


def test_the_command_line_loads_no_torch_until_a_command_runs() -> None:
    # `fsearch --help` stays fast: the CLI imports the library's heavy parts inside its commands.
    code = "import sys, search.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_spaces_lazy_names_are_its_public_names() -> None:
    assert sorted(space.__all__) == sorted(space._HOMES)
    for name in space.__all__:
        assert getattr(space, name) is not None


def test_the_suites_slowest_first_order_names_test_modules() -> None:
    """A module renamed out of ``SLOWEST_FIRST`` (tests/conftest.py) would run last and end the run alone."""
    from tests.conftest import SLOWEST_FIRST

    assert len(set(SLOWEST_FIRST)) == len(SLOWEST_FIRST)
    assert all((REPO / "tests" / f"{name}.py").is_file() for name in SLOWEST_FIRST)
