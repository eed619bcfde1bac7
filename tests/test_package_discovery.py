"""setup.py discovers the packages from the tree: every source folder that holds Python files
must be a package (an ``__init__.py``), or its modules would silently miss the wheel."""
import importlib.util
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parent.parent


def _setup_module(monkeypatch):
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)
    spec = importlib.util.spec_from_file_location("qat_harness_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_folder_of_python_files_is_a_discovered_package(monkeypatch):
    setup = _setup_module(monkeypatch)
    packages = set(setup.discover_packages())
    missing = []
    for name, folder in setup.SOURCE_FOLDERS.items():
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            package = ".".join((name, *source.parent.relative_to(ROOT / folder).parts))
            if package not in packages:
                missing.append(f"{source.relative_to(ROOT)} (no __init__.py in its folder)")
    assert not missing, missing


def test_the_mapping_matches_pyproject(monkeypatch):
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert declared == _setup_module(monkeypatch).SOURCE_FOLDERS
