"""core.files: a path where a file is expected is a regular file, checked without opening it
(a FIFO never blocks), within a size; and the one content digest every cache uses."""
from __future__ import annotations

import hashlib
import os

import pytest

from qat_harness.core.errors import UsageError
from qat_harness.core.files import file_digest, folder_digest, regular_file


@pytest.mark.timeout(60, method="signal")
def test_a_fifo_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UsageError, match=r"^thing .*pipe is not a regular file \(a FIFO\); give a file$"):
        regular_file(tmp_path / "pipe", "thing")


@pytest.mark.parametrize("make,words", [
    (lambda p: p.mkdir(), "is a folder, not a file"),
    (lambda p: p.symlink_to("/dev/null"), "not a regular file (a character device)"),
    (lambda p: None, "thing not found"),
    (lambda p: p.symlink_to(p.parent / "nowhere"), "thing not found"),
])
def test_anything_but_a_regular_file_is_one_line(tmp_path, make, words):
    path = tmp_path / "x"
    make(path)
    with pytest.raises(UsageError) as info:
        regular_file(path, "thing")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_size_limit_and_a_regular_file_through_a_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_bytes(b"12345")
    (tmp_path / "link.txt").symlink_to(real)
    assert regular_file(tmp_path / "link.txt", "thing", max_bytes=5) == tmp_path / "link.txt"
    with pytest.raises(UsageError, match="is 5 bytes, more than the 4"):
        regular_file(real, "thing", max_bytes=4)


def test_file_digest_is_sha256_of_the_bytes(tmp_path):
    data = os.urandom(3 << 20)  # more than one read
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_folder_digest_follows_content_and_paths_not_location_or_bytecode(tmp_path):
    for copy in ("a", "b"):
        (tmp_path / copy / "pkg" / "__pycache__").mkdir(parents=True)
        (tmp_path / copy / "pkg" / "__init__.py").write_text("x = 1\n")
    (tmp_path / "b" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"written on import")
    assert folder_digest(tmp_path / "a") == folder_digest(tmp_path / "b")
    (tmp_path / "b" / "pkg" / "__init__.py").write_text("x = 2\n")
    assert folder_digest(tmp_path / "a") != folder_digest(tmp_path / "b")
    (tmp_path / "b" / "pkg" / "__init__.py").rename(tmp_path / "b" / "pkg" / "other.py")
    (tmp_path / "b" / "pkg" / "other.py").write_text("x = 1\n")
    assert folder_digest(tmp_path / "a") != folder_digest(tmp_path / "b")
