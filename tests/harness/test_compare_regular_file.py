"""Issue 19 item 12: a compared report that is not a regular file (a FIFO, a device) is one line
and exit 2, never a read that blocks for ever."""
from __future__ import annotations

import os

import pytest

from qat_harness import cli, compare
from qat_harness.core.errors import UsageError


@pytest.mark.timeout(60, method="signal")
def test_a_fifo_report_is_refused_not_read(tmp_path, capsys):
    os.mkfifo(tmp_path / "report.json")
    with pytest.raises(UsageError, match="not a regular file"):
        compare.compare_files(tmp_path / "report.json", tmp_path / "report.json")
    code = cli.main(["compare", str(tmp_path / "report.json"), str(tmp_path / "report.json")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "Traceback" not in err and "(a FIFO)" in err


@pytest.mark.timeout(60, method="signal")
def test_a_run_folder_whose_report_is_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "report.json")
    with pytest.raises(UsageError, match="not a regular file"):
        compare.compare_files(tmp_path, tmp_path)  # a folder: its report.json is read


def test_a_device_node_as_a_report_is_refused(tmp_path):
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    with pytest.raises(UsageError, match="character device"):
        compare.compare_files(tmp_path / "zero.json", tmp_path / "zero.json")
