"""The `ncf` package's layout: every module imports, and no module imports itself through others.

The import graph is read from the source with `ast` (every `import` and `from ... import` of an `ncf`
module, at module level, inside functions and under `TYPE_CHECKING` alike), so a cycle that Python
happens to tolerate at run time (a function-level import, a type-only import) is still reported.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

NCF = Path(__file__).resolve().parents[1] / "training" / "ncf"
STAGES = ("data", "models", "fit", "evaluation", "serving")


def module_name(path: Path) -> str:
    """`training/ncf/fit/stage_loop.py` -> `ncf.fit.stage_loop`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(NCF.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    """{module name: source file} of every module of the package."""
    return {module_name(path): path for path in sorted(NCF.rglob("*.py"))}


def imported(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The `ncf` modules a source tree imports (`from ncf.fit import interruption` names the module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
            found.update(submodules or {node.module})
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the ncf modules it imports}, for every module of the package."""
    modules = all_modules()
    return {name: imported(ast.parse(path.read_text(), str(path)), modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_every_module_of_the_package_imports(name: str) -> None:
    importlib.import_module(name)


def test_the_import_graph_of_ncf_has_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_several_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_function_level_and_type_only_imports(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ncf.serving.export import Recommender\n"
        "def f():\n    from ncf.fit import interruption\n"
    )
    found = imported(ast.parse(source), all_modules())
    assert found == {"ncf.serving.export", "ncf.fit.interruption"}


def test_the_top_level_keeps_only_what_every_stage_shares() -> None:
    """One subpackage per stage; beside them only the shared modules (the README's *Layout*)."""
    top = {path.stem for path in NCF.glob("*.py")} - {"__init__"}
    shared = {
        "errors",
        "choices",
        "checksums",
        "sagemaker_env",
        "settings_cli",
        "train_settings",
        "reporting",
    }
    assert top == shared
    assert {path.name for path in NCF.iterdir() if (path / "__init__.py").is_file()} == set(STAGES)
