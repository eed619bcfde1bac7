"""The folder of a run, through which every file of the run is written: atomically (a reader
finds the old file or the new one, never half of one), locked while a run writes it, and with a
reserve of disk space kept for the last report.

``write_atomically`` is the one atomic writer of the harness; files outside a run folder (a
layer matrix, a trace, the nightly history page) go through it too."""
from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
from pathlib import Path

from qat_harness.core.errors import UsageError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Files come out of ``mkstemp`` private (0600); a report is for reading, so the final file gets
#: the mode the process's umask gives any new file. Read once, at import, before threads start.
FILE_MODE = 0o666 & ~_process_umask()


def write_atomically(path: Path, content: str | bytes) -> Path:
    """Write ``path`` through a temporary file in its folder, flushed to the disk, and rename it
    into place: the file is either the old one or the new one, and the temporary never
    outlives a failure. Text is written as UTF-8 whatever the locale says."""
    staged = StagedFile(path, content)
    try:
        staged.commit()
    finally:
        staged.discard()
    return staged.path


def safe_name(name: str) -> str:
    """A model, device or probe name as one file-name component."""
    return re.sub(r"[^\w.-]+", "_", name)


class StagedFile:
    """A file written to a temporary name beside its place, put in place by ``commit``: the
    pages of a run are staged first and put in place only once report.json holds what they say."""

    def __init__(self, path: Path, content: str | bytes):
        self.path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}-", suffix=self.path.suffix,
                                   dir=self.path.parent)
        self.tmp: Path | None = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), FILE_MODE)
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        if self.tmp is not None:
            os.replace(self.tmp, self.path)
            self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


class RunFolderBusy(UsageError):
    """Another run is writing this folder."""


class RunFolder:
    """A run's output folder. Opening it checks that it can be written and locks it (``flock``
    on the folder itself, released by ``close``) so that two runs never write one report.

    The reserve: a file of spare room beside the report, taken while there is space. When the
    disk fills up it is given back so that the report of everything measured can still be
    written once."""

    RESERVE = ".report-reserve"

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"output folder {path} is not writable: {exc.strerror or exc}") from None
        self._lock_fd: int | None = None
        self._lock()

    def _lock(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(f"{self.path} is in use by another run; give another --out") from None
        self._lock_fd = fd

    def close(self) -> None:
        """Give back the reserve and the lock."""
        self.release_reserve()
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def __del__(self):
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write(self, name: str, content: str | bytes) -> Path:
        return write_atomically(self.path / name, content)

    def write_with_reserve(self, name: str, content: str | bytes) -> Path:
        """Write a file that must get written: on a full disk the reserve is given back and the
        write tried once more, then the error goes on. After a success the reserve is taken
        again (room for twice this file, at least 1 MiB)."""
        try:
            path = self.write(name, content)
        except OSError as exc:
            if exc.errno not in DISK_FULL or not self.release_reserve():
                raise
            self.write(name, content)
            raise
        self._keep_reserve(len(content))
        return path

    def stage(self, path: Path, content: str | bytes) -> StagedFile:
        return StagedFile(path, content)

    def _keep_reserve(self, report_bytes: int) -> None:
        want = max(1 << 20, 2 * report_bytes)
        path = self.path / self.RESERVE
        try:
            if path.exists() and path.stat().st_size >= want:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.posix_fallocate(fd, 0, want)
            finally:
                os.close(fd)
        except OSError:
            pass  # no room for a reserve: the report itself still fits, and that is what counts

    def release_reserve(self) -> bool:
        try:
            (self.path / self.RESERVE).unlink()
            return True
        except OSError:
            return False
