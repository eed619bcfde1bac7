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
