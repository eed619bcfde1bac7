"""The run folder: every file written atomically (the old file or the new one, never half of one,
no temporary left behind), text always as UTF-8, files as readable as the umask makes any new
file, one run at a time."""
import errno
import os

import pytest

from qat_harness.core.errors import UsageError
from qat_harness.record import folder as folder_module
from qat_harness.record.folder import RunFolder, RunFolderBusy, write_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "report.md"
    write_atomically(path, "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(folder_module.os, "fsync", full)
    with pytest.raises(OSError):
        write_atomically(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_text_is_utf8_whatever_the_locale_and_files_follow_the_umask(tmp_path):
    path = write_atomically(tmp_path / "report.md", "naïve ✓ 模型")
    assert path.read_bytes() == "naïve ✓ 模型".encode("utf-8")
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_two_runs_never_share_a_folder(tmp_path):
    first = RunFolder(tmp_path)
    with pytest.raises(RunFolderBusy, match="in use by another run"):
        RunFolder(tmp_path)
    first.close()
    RunFolder(tmp_path).close()


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is not writable") as exc:
        RunFolder(tmp_path / "file" / "out")
    assert "\n" not in str(exc.value)


def test_the_reserve_is_given_back_to_write_the_report_once_more(tmp_path, monkeypatch):
    run_folder = RunFolder(tmp_path)
    run_folder.write_with_reserve("report.json", "{}")
    assert (tmp_path / RunFolder.RESERVE).stat().st_size >= 1 << 20
    real, calls = os.fsync, []

    def full_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)
    monkeypatch.setattr(folder_module.os, "fsync", full_once)
    with pytest.raises(OSError):
        run_folder.write_with_reserve("report.json", '{"a": 1}')
    assert (tmp_path / "report.json").read_text() == '{"a": 1}'     # written after the reserve went
    assert not (tmp_path / RunFolder.RESERVE).exists()
    run_folder.close()
