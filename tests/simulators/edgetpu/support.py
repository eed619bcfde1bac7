"""What the Edge TPU tests share: where the fake compiler and the recorded outputs are, how a
recording's text is read, and how the fake is started with the tests' own interpreter."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

SIM_DIR = Path(__file__).resolve().parent
FAKE_COMPILER = SIM_DIR / "edgetpu_compiler"
HAND_WRITTEN_LOGS = SIM_DIR / "logs"
REAL_OUTPUTS = SIM_DIR.parent.parent / "fixtures" / "real" / "edgetpu_compiler"


def tool_output(path: Path) -> str:
    """A recording's text without its line 1 (the source, or the hand-written label)."""
    text = Path(path).read_text()
    first, _, rest = text.partition("\n")
    return rest if first.startswith("# ") else text


def write_launcher(folder: Path, name: str = "edgetpu_compiler") -> Path:
    """An executable ``folder/name`` that runs the fake compiler with ``sys.executable``.

    Started through its ``#!/usr/bin/env python3`` shebang, the fake would run on whatever
    ``python3`` comes first on PATH, which need not have this package's dependencies (a venv
    that is not activated). ``/bin/sh`` rather than a ``#!sys.executable`` line, because a
    shebang line is cut at 127 bytes on older kernels and venv paths can be longer. ``exec``,
    so that killing the launcher on a timeout kills the fake (no orphan holding the pipe).
    """
    folder.mkdir(parents=True, exist_ok=True)
    launcher = folder / name
    launcher.write_text("#!/bin/sh\n"
                        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_COMPILER))} \"$@\"\n")
    launcher.chmod(0o755)
    return launcher
