"""Issue 19 item 12, data: everything read from a user's data set is bounded before it is
read. An .npz: only the arrays used are read, their headers are checked first (numbers,
within the limit), the values are finite. A path where a file is expected (data set, labels
file, image) is a regular file: a FIFO is one line, never a hang. And the digest that keys
the artifact cache follows the arrays, not the name."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from qat_harness.core.errors import UsageError
from qat_harness.models import datasets

# A FIFO nobody writes to blocks open() for ever: these tests fail by timeout, not by hanging.
no_hang = pytest.mark.timeout(60, method="signal")


def _npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _refused(path, *words, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        datasets.npz(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


# -- .npz ----------------------------------------------------------------------------------------
@no_hang
def test_a_fifo_dataset_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    _refused(fifo, "not a regular file", "FIFO")


def test_a_folder_or_a_device_as_the_dataset_is_one_line(tmp_path):
    (tmp_path / "data.npz").mkdir()
    _refused(tmp_path / "data.npz", "is a folder")
    link = tmp_path / "zero.npz"
    link.symlink_to("/dev/zero")  # would stream zeros without end
    _refused(link, "not a regular file", "character device")


def test_an_array_declaring_more_than_the_limit_is_refused_from_its_header(tmp_path):
    # 40 GB declared, 64 bytes present: refused before numpy allocates or reads anything
    path = _zip(tmp_path / "big.npz", {"x.npy": _npy_header((100_000, 100_000)) + b"\0" * 64})
    message = _refused(path, "[100000, 100000]", "more than the")
    assert str(datasets.MAX_DATASET_BYTES) in message


def test_the_arrays_used_count_together_against_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", 1000)
    path = _zip(tmp_path / "two.npz", {"x.npy": _npy(np.zeros((100, 2), np.float32)),   # 800 bytes
                                       "y.npy": _npy(np.zeros(100, np.int64))})          # 800 more
    _refused(path, "1600 bytes", "more than the 1000")


def test_only_the_arrays_used_are_read(tmp_path):
    # 'junk' declares 40 GB and holds nothing: reading it would fail, so it must not be read
    path = _zip(tmp_path / "extra.npz", {"junk.npy": _npy_header((100_000, 100_000)),
                                         "x.npy": _npy(np.ones((6, 2), np.float32)),
                                         "y.npy": _npy(np.arange(6) % 2)})
    data = datasets.npz(path)
    assert data.x_eval.shape == (3, 2) and data.labels_meaningful


def test_a_truncated_array_is_one_line(tmp_path):
    path = _zip(tmp_path / "cut.npz", {"x.npy": _npy_header((100, 4)) + b"\0" * 10})
    _refused(path, "not a readable .npz")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_inputs_are_refused_naming_the_example(tmp_path, value):
    x = np.ones((5, 3), np.float32)
    x[3, 1] = value
    np.savez(tmp_path / "bad.npz", x=x)
    _refused(tmp_path / "bad.npz", "NaN or infinite", "example 3")


def test_nan_in_the_second_input_of_a_two_input_model(tmp_path):
    second = np.zeros((4, 2))
    second[0, 0] = np.nan
    np.savez(tmp_path / "two.npz", x_0=np.zeros((4, 3)), x_1=second)
    _refused(tmp_path / "two.npz", "example 0 of input 1", n_inputs=2)


@pytest.mark.parametrize("arrays,words", [
    ({"x": np.array([{"a": 1}, None], dtype=object)}, ("object", "never unpickled")),
    ({"x": np.float32(3.0)}, ("single value",)),
    ({"x": np.array(["a", "b"])}, ("not numbers",)),
    ({"x": np.zeros((3, 2)), "y": np.array([0.0, 1.0, 1.0])}, ("'y' must hold",)),
    ({"x": np.zeros((3, 2)), "y": np.zeros((3, 1), np.int64)}, ("'y' must hold",)),
    ({"x": np.zeros((3, 2)), "y": np.array([0, -1, 2])}, ("'y' must hold",)),
], ids=["objects", "scalar", "strings", "float-y", "2d-y", "negative-y"])
def test_arrays_that_are_not_examples_of_numbers_are_refused(tmp_path, arrays, words):
    path = tmp_path / "odd.npz"
    np.savez(path, **arrays)  # object arrays are pickled by savez; the reader never unpickles
    _refused(path, *words)


def test_a_plain_npy_named_npz_is_one_line(tmp_path):
    path = tmp_path / "plain.npz"
    path.write_bytes(_npy(np.zeros((3, 2))))
    _refused(path, "not a readable .npz")


def test_a_compressed_npz_reads(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(12, dtype=np.float32).reshape(6, 2))
    assert datasets.npz(tmp_path / "c.npz").x_eval.shape == (6, 2)


# -- labels and images -----------------------------------------------------------------------------
@no_hang
def test_a_fifo_labels_file_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "labels.txt")
    with pytest.raises(UsageError, match="labels file .* not a regular file"):
        datasets.read_labels(tmp_path / "labels.txt")


def test_a_labels_file_larger_than_the_limit_is_not_read(tmp_path):
    path = tmp_path / "labels.txt"
    with open(path, "wb") as f:
        f.truncate(datasets.MAX_LABELS_BYTES + 1)  # sparse: nothing written, nothing to read
    with pytest.raises(UsageError, match="more than the"):
        datasets.read_labels(path)


def _image_folder(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "images"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    return root


@no_hang
def test_a_fifo_among_the_images_is_one_line(tmp_path):
    root = _image_folder(tmp_path)
    os.mkfifo(root / "b" / "2.png")
    with pytest.raises(UsageError, match=r"image .*2\.png is not a regular file \(a FIFO\)"):
        datasets.image_folder(root, 4, datasets.preprocess("unit"))


def test_a_folder_named_like_an_image_is_one_line(tmp_path):
    root = _image_folder(tmp_path)
    (root / "a" / "9.png").mkdir()
    with pytest.raises(UsageError, match=r"9\.png is a folder"):
        datasets.image_folder(root, 4, datasets.preprocess("unit"))


def test_an_image_folder_over_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    root = _image_folder(tmp_path)
    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", 4 * 224 * 224 * 3 * 4 - 1)

    def never(*args, **kwargs):
        raise AssertionError("an image was decoded before the size was checked")
    monkeypatch.setattr(datasets, "read_image", never)
    with pytest.raises(UsageError, match="4 images at 224x224x3 .* --limit-per-class"):
        datasets.image_folder(root, 224, datasets.preprocess("unit"))


# -- the digest the artifact cache keys on ------------------------------------------------------------
def test_the_digest_follows_the_arrays_not_the_name(tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (10, 3)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(10) % 2)
    first = datasets.npz(tmp_path / "data.npz").digest()
    (tmp_path / "copy.npz").write_bytes((tmp_path / "data.npz").read_bytes())
    assert datasets.npz(tmp_path / "copy.npz").digest() == first
    x[0, 0] += 1e-3
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(10) % 2)
    changed = datasets.npz(tmp_path / "data.npz").digest()
    assert changed != first
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(10) % 3)
    assert datasets.npz(tmp_path / "data.npz").digest() not in (first, changed)
