"""Runs inside the emulated aarch64 CPython (started by ``launch``; stdlib only until the
packages are mapped): ``guest.py PACKAGES SITE MODULE ARGS...`` maps each of the harness's
import names to the folder the host installation has it in (``PACKAGES``, JSON), puts the
root's wheel folder ``SITE`` on ``sys.path`` and runs ``MODULE`` as ``__main__`` with ``ARGS``.
Nothing from the current folder or the host's site-packages is importable."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import runpy
import sys
from pathlib import Path


class MappedPackages(importlib.abc.MetaPathFinder):
    """The harness's top packages at the folders given; their submodules are found the usual way."""

    def __init__(self, folders: dict[str, str]):
        self.folders = folders

    def find_spec(self, name, path=None, target=None):
        folder = self.folders.get(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(name, str(Path(folder) / "__init__.py"),
                                                      submodule_search_locations=[folder])


def main(argv: list[str]) -> None:
    folders, site, module, args = json.loads(argv[0]), argv[1], argv[2], argv[3:]
    sys.path.append(site)
    sys.meta_path.insert(0, MappedPackages(folders))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
