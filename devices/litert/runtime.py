"""Which LiteRT runtime package a LiteRT device loads, and what tells one build from another:
the installed ``ai_edge_litert`` (or the ``tflite_runtime`` fallback), or the one in a folder
the user names (``--litert-runtime DIR``: e.g. ``pip install --target DIR ai-edge-litert==X`` to
time another build beside the installed one). Its identity is the digest of its files, not only
its version: a rebuilt wheel of the same version, or a kept copy, is recognised as what it is.

A child process loads a runtime from a folder with ``activate`` before anything imports it.
Found with ``find_spec`` and read from disk: the harness's own process never imports LiteRT."""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re
import sys
from pathlib import Path

from qat_harness.core.files import folder_digest

#: importable names of LiteRT's Python runtime, preferred first
MODULES = ("ai_edge_litert", "tflite_runtime")
_VERSION = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class RuntimePackage:
    module: str      # 'ai_edge_litert' or 'tflite_runtime'
    folder: Path     # the package's own folder (holding its __init__.py)

    @property
    def root(self) -> Path:
        """The folder to put first on ``sys.path`` to import this package."""
        return self.folder.parent

    @property
    def version(self) -> str | None:
        return _version_of(self.folder)

    @property
    def digest(self) -> str:
        return _digest_of(self.folder)

    def facts(self) -> dict[str, str | None]:
        """What a device's description says of its runtime (the nightly keeps and compares it)."""
        return {"runtime": self.module, "runtime_version": self.version, "runtime_digest": self.digest,
                "runtime_path": str(self.folder)}

    def text(self) -> str:
        return f"{self.module} {self.version or '(version unknown)'} (sha256 {self.digest[:12]})"


def installed() -> RuntimePackage | None:
    """The runtime this Python imports by default, or None."""
    for module in MODULES:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            return RuntimePackage(module, Path(list(spec.submodule_search_locations)[0]).resolve())
    return None


def in_folder(root: Path | str) -> RuntimePackage:
    """The runtime package inside ``root`` (a folder holding ``ai_edge_litert/``); ValueError,
    in one line, when there is none."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"LiteRT runtime folder {root} is not a folder")
    for module in MODULES:
        if (root / module / "__init__.py").is_file():
            return RuntimePackage(module, (root / module).resolve())
    raise ValueError(f"LiteRT runtime folder {root} holds no {' or '.join(MODULES)} package "
                     "(give the folder that contains it, e.g. one made by pip install --target)")


def activate(root: str | None) -> None:
    """Child side: import LiteRT from ``root`` (None: the installed one). Called before anything
    imports it; bytecode is not written into a folder the harness keeps by digest."""
    if not root:
        return
    if any(module in sys.modules for module in MODULES):
        raise RuntimeError(f"a LiteRT runtime was imported before the one in {root} could be")
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(root))


def loaded() -> dict[str, str | None]:
    """Child side: the runtime that was imported, to check it is the one asked for."""
    for module in MODULES:
        if module in sys.modules:
            mod = sys.modules[module]
            return {"module": module, "file": getattr(mod, "__file__", None),
                    "version": getattr(mod, "__version__", None)}
    return {"module": None, "file": None, "version": None}


@functools.cache
def _digest_of(folder: Path) -> str:
    return folder_digest(folder)


def _version_of(folder: Path) -> str | None:
    """``__version__`` as the package's ``__init__.py`` assigns it, read, not imported."""
    try:
        found = _VERSION.search((folder / "__init__.py").read_text(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None
