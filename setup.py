"""Package discovery for the one import name ``qat_harness``.

The source tree keeps its top-level folders (harness/, core/, models/, devices/), each mapped onto
part of ``qat_harness`` by ``package-dir`` in pyproject.toml. setuptools' own ``find`` cannot
discover packages through such a mapping, so the list is read from the tree here: every folder
holding an ``__init__.py`` below a mapped folder is a package, and a new subpackage can never be
left out of the wheel (tests/test_packaging.py checks that every folder of .py files is one).
Everything else about the project is declared in pyproject.toml."""
from pathlib import Path

from setuptools import setup

#: import name -> source folder, as pyproject.toml's [tool.setuptools] package-dir says
SOURCE_FOLDERS = {"qat_harness": "harness", "qat_harness.core": "core",
                  "qat_harness.models": "models", "qat_harness.devices": "devices"}


def discover_packages() -> list[str]:
    here = Path(__file__).resolve().parent
    found = set()
    for name, folder in SOURCE_FOLDERS.items():
        root = here / folder
        for init in root.rglob("__init__.py"):
            found.add(".".join((name, *init.parent.relative_to(root).parts)))
    return sorted(found)


setup(packages=discover_packages())
