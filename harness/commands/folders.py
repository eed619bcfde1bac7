"""Run folders: every run writes into a folder of its own."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from qat_harness.core.errors import UsageError


def stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_folder(parent: Path, name: str) -> Path:
    """Create ``parent/name`` exclusively, or ``name-2``, ``name-3``, ... when another run
    (started in the same second) already has it: two runs never share a folder."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise UsageError(f"cannot create a new run folder in {parent}: {name}-1..999 all exist")


def default_out(kind: str) -> Path:
    """``reports/<kind>-<time>``, created."""
    return new_run_folder(Path("reports"), f"{kind}-{stamp()}")
