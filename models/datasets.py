"""Evaluation data sets. Each returns float32 NHWC arrays already preprocessed for its model.

Only data that ships in a package (scikit-learn's digits) or that the code makes is used on the
build machines; a user-supplied image folder (ImageNet-style ``class/xxx.jpg``) gives real
accuracy numbers for the application models.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qat_harness.core.errors import UsageError

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray | None
    y_train: np.ndarray | None
    x_eval: np.ndarray
    y_eval: np.ndarray | None  # None: no labels (synthetic inputs for size/latency only)
    labels_meaningful: bool = True

    @property
    def n_classes(self) -> int:
        ys = [y for y in (self.y_train, self.y_eval) if y is not None]
        return int(max(int(y.max()) for y in ys) + 1) if ys else 0


def digits(size: int = 32) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), upscaled by pixel repetition to
    ``size``x``size`` and scaled to [0, 1]; a fixed stratified 80/20 split with seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if size % 8:
        raise UsageError(f"digits input size must be a multiple of 8, got {size}")
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    factor = size // 8
    images = np.kron(images, np.ones((1, factor, factor), dtype=np.float32))[..., None]
    x_tr, x_te, y_tr, y_te = train_test_split(images, data.target.astype(np.int64),
                                              test_size=DIGITS_TEST_FRACTION,
                                              random_state=DIGITS_SEED, stratify=data.target)
    return Dataset("sklearn-digits", x_tr, y_tr, x_te, y_te)


def synthetic(shape: tuple[int, ...], n: int = 32, seed: int = 0) -> Dataset:
    """Random inputs in the preprocessed range [-1, 1]: enough for size, latency and
    calibration of an untrained model, never for accuracy or agreement."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, *shape)).astype(np.float32)
    return Dataset("synthetic", None, None, x, None, labels_meaningful=False)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def image_folder(root: Path, image_size: int, preprocess, limit_per_class: int | None = None,
                 eval_fraction: float = 0.5, seed: int = 0) -> Dataset:
    """An ImageNet-style folder: one sub-folder per class (sorted names → class index, as
    Keras' ImageNet class order when the folders are the synset ids), images inside."""
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"dataset folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UsageError(f"dataset folder {root} has no class sub-folders (expected class/xxx.jpg)")
    xs, ys = [], []
    for idx, cls in enumerate(classes):
        files = sorted(f for f in (root / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in files[:limit_per_class]:
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB").resize((image_size, image_size))
                    xs.append(np.asarray(im, dtype=np.float32))
                    ys.append(idx)
            except OSError as exc:
                raise UsageError(f"cannot read image {f}: {exc}") from None
    if not xs:
        raise UsageError(f"dataset folder {root} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    x = preprocess(np.stack(xs)).astype(np.float32)
    y = np.asarray(ys, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_eval = max(1, int(len(x) * eval_fraction))
    ev, tr = order[:n_eval], order[n_eval:]
    return Dataset(f"folder:{root.name}", x[tr] if len(tr) else None, y[tr] if len(tr) else None,
                   x[ev], y[ev])
