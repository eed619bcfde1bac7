"""The top-level folders depend one way: harness -> devices, models -> core. A module that
imports upwards (a device reading the run's report, the foundation importing a device) would
bring the cycles back."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {"core": ("qat_harness.core",),
           "devices": ("qat_harness.core", "qat_harness.devices"),
           "models": ("qat_harness.core", "qat_harness.models")}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module if node.module != "qat_harness" else
                      ",".join(f"qat_harness.{a.name}" for a in node.names))
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for name in names for n in name.split(",") if n.startswith("qat_harness")}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_no_upward_imports(folder):
    bad = {f"{p.relative_to(ROOT)}: {name}"
           for p in (ROOT / folder).rglob("*.py") for name in _imports(p)
           if not name.startswith(ALLOWED[folder])}
    assert not bad, sorted(bad)


# -- no import cycles, between any two modules of the package ------------------------------------
SOURCE_FOLDERS = {"qat_harness": "harness", "qat_harness.core": "core",
                  "qat_harness.models": "models", "qat_harness.devices": "devices"}


def _modules() -> dict[str, Path]:
    modules = {}
    for name, folder in SOURCE_FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([name, *parts])] = path
    return modules


def _package_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere, inside functions too: a lazy
    import hides a cycle from the interpreter, not from the reader. ``from pkg import mod``
    names the module, not the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= submodules or ({node.module} & set(modules))
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & set(modules)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {name: _package_imports(path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
