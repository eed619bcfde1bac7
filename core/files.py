"""Reading a user's files safely: where a file is expected, a regular file (a FIFO would block
the reader forever, a device node can stream without end, a folder fails deep in a library),
within a stated size; and the content digest that keys caches on what a file holds, not on
its name."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from qat_harness.core.errors import UsageError


def regular_file(path, what: str, max_bytes: int | None = None) -> Path:
    """``path`` if it names a regular file (symbolic links followed) of at most ``max_bytes``;
    anything else is a one-line ``UsageError`` naming ``what`` the file was to be. Checked by
    ``stat`` only: nothing is opened, so a FIFO cannot block."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {path} is not a regular file ({_kind(st.st_mode)}); give a file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UsageError(f"{what} {path} is {st.st_size} bytes, more than the {max_bytes} read "
                         "from such a file")
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def file_digest(path) -> str:
    """sha256 of a file's bytes (read in chunks: a file may be larger than memory)."""
    with open(os.fspath(path), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: Written by Python itself when a package is imported: not part of what a package holds.
BYTECODE_FOLDER = "__pycache__"


def folder_digest(folder) -> str:
    """sha256 over every file under ``folder`` (its path relative to the folder, then its own
    sha256), in path order, bytecode caches left out: two copies of one package digest alike
    wherever they lie and whichever of them Python has imported."""
    root = Path(folder)
    outer = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and BYTECODE_FOLDER not in p.parts):
        outer.update(path.relative_to(root).as_posix().encode() + b"\0" + file_digest(path).encode() + b"\n")
    return outer.hexdigest()
