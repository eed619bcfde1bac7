"""Issue 20 items 1 and 3, the data sets: an image folder read for a grayscale input without a
channel axis ([H, W]) gives HxW examples (colour images converted to gray); read for a uint8
input as its pixel bytes it stays uint8; a labelled set evaluated whole keeps no training part."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qat_harness.models import datasets


def _folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Two classes of 6x5 images: grayscale PNGs and one RGB PNG; returns the gray pixels by file name."""
    from PIL import Image

    root, gray = tmp_path / "images", {}
    rng = np.random.default_rng(3)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (6, 5), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / cls / f"{i}.png")
            gray[f"{cls}/{i}"] = pixels
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(root / "b" / "rgb.png")
    gray["b/rgb"] = np.asarray(Image.fromarray(rgb, mode="RGB").convert("L"))
    return root, gray


def test_a_grayscale_input_without_a_channel_axis_reads_hxw_images(tmp_path):
    root, gray = _folder(tmp_path)
    data = datasets.image_folder(root, (6, 5), datasets.preprocess("raw"), eval_fraction=1.0,
                                 channels=1, channel_axis=False)
    assert data.x_eval.shape == (7, 6, 5) and data.x_eval.dtype == np.float32
    expected = {tuple(map(float, p.ravel())) for p in gray.values()}
    assert {tuple(map(float, x.ravel())) for x in data.x_eval} == expected


def test_pixel_bytes_stay_uint8(tmp_path):
    root, gray = _folder(tmp_path)
    data = datasets.image_folder(root, (6, 5), datasets.pixel_bytes, eval_fraction=1.0, channels=1)
    assert data.x_eval.shape == (7, 6, 5, 1) and data.x_eval.dtype == np.uint8
    assert {x.tobytes() for x in data.x_eval} == {p.tobytes() for p in gray.values()}


def test_labelled_data_evaluated_whole_keeps_no_training_part(tmp_path):
    root, _ = _folder(tmp_path)
    folder = datasets.image_folder(root, (6, 5), datasets.preprocess("unit"), eval_fraction=1.0, channels=1)
    assert folder.x_train is None and folder.y_train is None and len(folder.x_eval) == 7
    np.savez(tmp_path / "d.npz", x=np.zeros((9, 2), np.float32), y=np.arange(9) % 2)
    arrays = datasets.npz(tmp_path / "d.npz", eval_fraction=1.0)
    assert arrays.x_train is None and len(arrays.x_eval) == len(arrays.y_eval) == 9


def test_with_inputs_converts_training_and_evaluation_arrays_of_every_input():
    data = datasets.Dataset("d", [np.ones(2), np.ones(3)], None, [np.ones(4), np.ones(5)], None)
    doubled = data.with_inputs(lambda i, a: a * (i + 2))
    assert [a.sum() for a in doubled.x_train] == [4, 9] and [a.sum() for a in doubled.x_eval] == [8, 15]
    assert [len(a) for a in doubled.input_arrays(1)] == [3, 5]
