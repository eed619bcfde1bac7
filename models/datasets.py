"""Evaluation data sets. Each returns float32 NHWC arrays already preprocessed for its model.

Only data that ships in a package (scikit-learn's digits) or that the code makes is used on the
build machines; a user-supplied image folder (ImageNet-style ``class/xxx.jpg``) gives real
accuracy numbers for the application models.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qat_harness.core.errors import UsageError
from qat_harness.core.files import regular_file

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2
#: The share of a labelled user data set kept for evaluation when the rest trains (QAT's
#: fine-tune); data that trains nothing is evaluated whole (``eval_fraction=1.0``).
TRAIN_EVAL_FRACTION = 0.5
#: The most a user's data set may take in memory once read (the arrays used of an .npz, from
#: their headers; an image folder's images as float32): checked before anything is read.
MAX_DATASET_BYTES = 4 << 30
#: A labels file is one class name per line: ImageNet-21k's takes about 0.5 MB.
MAX_LABELS_BYTES = 16 << 20


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray | None
    y_train: np.ndarray | None
    x_eval: np.ndarray | list[np.ndarray]  # a list for a model with several inputs
    y_eval: np.ndarray | None  # None: no labels (synthetic inputs for size/latency only)
    labels_meaningful: bool = True

    @property
    def n_classes(self) -> int:
        ys = [y for y in (self.y_train, self.y_eval) if y is not None]
        return int(max(int(y.max()) for y in ys) + 1) if ys else 0

    def with_inputs(self, convert: Callable[[int, np.ndarray], np.ndarray]) -> Dataset:
        """The same examples with each input array (input index, array) converted, training
        and evaluation alike."""
        def each(value):
            if value is None:
                return None
            return [convert(i, a) for i, a in enumerate(value)] if isinstance(value, list) else convert(0, value)

        return dataclasses.replace(self, x_train=each(self.x_train), x_eval=each(self.x_eval))

    def input_arrays(self, index: int) -> list[np.ndarray]:
        """Every example of input ``index``: the training array (if any) and the evaluation one."""
        return [value[index] if isinstance(value, list) else value
                for value in (self.x_train, self.x_eval) if value is not None]

    def digest(self) -> str:
        """sha256 of the arrays themselves (after selection, split and preprocessing) and of
        whether the labels mean anything: what a build trains and calibrates on. The name
        says where the data came from, not what it holds, so it is not part of it."""
        h = hashlib.sha256(f"labels_meaningful={self.labels_meaningful}".encode())
        for field in ("x_train", "y_train", "x_eval", "y_eval"):
            value = getattr(self, field)
            arrays = value if isinstance(value, list) else [value]
            h.update(f"|{field}:{len(arrays) if isinstance(value, list) else 'one'}".encode())
            for array in arrays:
                if array is None:
                    h.update(b"|none")
                    continue
                array = np.ascontiguousarray(array)
                h.update(f"|{array.dtype.str}{array.shape}".encode())
                h.update(array)  # type: ignore[arg-type]  # an ndarray is a buffer; numpy's stubs say so for 3.12+
        return h.hexdigest()


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


# -- preprocessing ------------------------------------------------------------------------------
def _caffe(x: np.ndarray) -> np.ndarray:
    """Keras' 'caffe' mode (ResNet50 v1): RGB -> BGR, minus the ImageNet channel means."""
    return x[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32)


def _torch(x: np.ndarray) -> np.ndarray:
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return (x / 255.0 - mean) / std


#: Named preprocessing of 0..255 RGB images into a model's float input range.
PREPROCESS = {
    "mobilenet": (lambda x: x / 127.5 - 1.0, "[-1, 1] (x / 127.5 - 1, MobileNet / 'tf' mode)"),
    "unit": (lambda x: x / 255.0, "[0, 1] (x / 255)"),
    "raw": (lambda x: x, "raw 0..255"),
    "caffe": (_caffe, "caffe: BGR minus ImageNet means (ResNet50 v1)"),
    "torch": (_torch, "torch: [0, 1] minus ImageNet mean, divided by std"),
}


def preprocess(scheme: str):
    if scheme not in PREPROCESS:
        raise UsageError(f"unknown --preprocess '{scheme}'; known: {', '.join(PREPROCESS)}")
    return PREPROCESS[scheme][0]


def pixel_bytes(x: np.ndarray) -> np.ndarray:
    """0..255 pixels as uint8, the form a uint8-input model takes them in as they are (8-bit
    images are whole numbers already; a 16-bit one, scaled to 0..255, is rounded)."""
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def scheme_for_range(low: float, high: float) -> str:
    """The scheme whose output range a quantized input tensor represents: a uint8 input with
    scale 1/128 and zero point 128 takes [-1, 1], one with scale 1/255 takes [0, 1], ..."""
    if low < -0.5:
        return "mobilenet"
    return "raw" if high > 2.0 else "unit"


# -- label files --------------------------------------------------------------------------------
def read_labels(path: Path) -> list[str]:
    """One class name per line; the line index is the model's output index (a leading
    'background' line shifts every class by one, as in TF's ImageNet label files)."""
    path = regular_file(path, "labels file", MAX_LABELS_BYTES)
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the labels file {path}: {exc}") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UsageError(f"labels file {path} is empty")
    return names


def class_indices(folder_names: list[str], labels: list[str] | None, source: str) -> dict[str, int]:
    """Class folder name -> output index: by the labels file when given (exact name, then
    case-insensitive), else by sorted folder order."""
    if labels is None:
        return {name: i for i, name in enumerate(sorted(folder_names))}
    exact = {name: i for i, name in enumerate(labels)}
    folded = {name.lower(): i for i, name in enumerate(labels)}
    out = {}
    for name in folder_names:
        index = exact.get(name, folded.get(name.lower()))
        if index is None:
            raise UsageError(f"class folder '{name}' of {source} is not in the labels file")
        out[name] = index
    return out


# -- user data ----------------------------------------------------------------------------------
#: 16-bit grayscale modes (PNG, TIFF): their full scale 0..65535 is mapped onto 0..255.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def read_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image file as float32 HxWxC on the 0..255 scale the preprocessing expects.
    Refuses, in one line, what cannot be read faithfully: an image larger than Pillow's
    decompression-bomb limit (checked from the header, before decoding), a 32-bit or float
    image. A 16-bit image keeps its range (scaled to 0..255), it is never clipped at 255."""
    from PIL import Image

    height, width = size
    regular_file(path, "image")
    im: Image.Image  # the opened file, then its converted copy
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.width * im.height > limit:
                raise UsageError(f"image {path} is {im.width}x{im.height} pixels, more than the "
                                 f"{limit} that are decoded safely; resize it first")
            if im.mode in SIXTEEN_BIT_MODES or (im.mode == "I" and im.format == "PNG"):
                return _sixteen_bit(im, path, (width, height), channels)
            if im.mode in ("I", "F"):
                raise UsageError(f"image {path} has 32-bit {'float' if im.mode == 'F' else 'integer'} "
                                 "pixels, whose range is unknown; save it with 8 or 16 bits per channel")
            im = im.convert("RGB" if channels == 3 else "L").resize((width, height))
            return np.asarray(im, dtype=np.float32).reshape(height, width, channels)
    except Image.DecompressionBombError as exc:
        raise UsageError(f"image {path} is too large to decode safely: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None


def _sixteen_bit(im, path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    from PIL import Image

    values = np.asarray(im, dtype=np.float32)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise UsageError(f"image {path} has values outside 0..65535 in a 16-bit mode")
    scaled = Image.fromarray(values * np.float32(255.0 / 65535.0), mode="F").resize(size)
    gray = np.asarray(scaled, dtype=np.float32)[..., None]
    return np.repeat(gray, channels, axis=-1) if channels == 3 else gray


def image_folder(root: Path, image_size: int | tuple[int, int], preprocess_fn,
                 limit_per_class: int | None = None, eval_fraction: float = TRAIN_EVAL_FRACTION, seed: int = 0,
                 labels: list[str] | None = None, channels: int = 3, channel_axis: bool = True) -> Dataset:
    """An ImageNet-style folder: one sub-folder per class, images inside. Class index: the
    labels file's line of the folder's name, or the sorted folder order (Keras' ImageNet order
    when the folders are synset ids). Examples are NxHxWxC, or NxHxW for a grayscale input
    without a channel axis (``channel_axis=False``, ``channels=1``); float32 unless
    ``preprocess_fn`` gives uint8 (``pixel_bytes``). ``eval_fraction`` of them (at least one)
    are for evaluation, the rest for training."""
    if not channel_axis and channels != 1:
        raise ValueError("only a grayscale input (one channel) has no channel axis")

    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"dataset folder not found: {root}")
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UsageError(f"dataset folder {root} has no class sub-folders (expected class/xxx.jpg)")
    index = class_indices(classes, labels, f"dataset {root}")
    chosen = {cls: sorted(f for f in (root / cls).iterdir()
                          if f.suffix.lower() in IMAGE_SUFFIXES)[:limit_per_class] for cls in classes}
    n_images = sum(len(files) for files in chosen.values())
    if not n_images:
        raise UsageError(f"dataset folder {root} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    needed = n_images * height * width * channels * np.dtype(np.float32).itemsize
    if needed > MAX_DATASET_BYTES:
        raise UsageError(f"dataset folder {root}: {n_images} images at {height}x{width}x{channels} take "
                         f"{needed} bytes as float32, more than the {MAX_DATASET_BYTES} a data set may "
                         "take; read fewer with --limit-per-class")
    xs, ys = [], []
    for cls, files in chosen.items():
        for f in files:
            xs.append(read_image(f, (height, width), channels))
            ys.append(index[cls])
    x = np.asarray(preprocess_fn(np.stack(xs)))
    x = x if x.dtype == np.uint8 else x.astype(np.float32)
    if not channel_axis:
        x = x[..., 0]
    y = np.asarray(ys, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_eval = max(1, int(len(x) * eval_fraction))
    ev, tr = order[:n_eval], order[n_eval:]
    return Dataset(f"folder:{root.name}", x[tr] if len(tr) else None, y[tr] if len(tr) else None,
                   x[ev], y[ev])


def npz(path: Path, n_inputs: int = 1, eval_fraction: float = TRAIN_EVAL_FRACTION, seed: int = 0) -> Dataset:
    """An .npz with ``x`` (or ``x_0``, ``x_1``, ... for a model with several inputs) and an
    optional ``y`` of class indices. Only those arrays are read, each header checked first
    (numbers, not Python objects; within ``MAX_DATASET_BYTES`` together); never unpickled.
    With ``y``, ``eval_fraction`` of the examples (at least one) are for evaluation and the
    rest for training; without, every example is for evaluation."""
    path = regular_file(path, "dataset file")
    xs, y = _npz_arrays(path, n_inputs)
    n = len(xs[0])
    if n == 0 or any(len(x) != n for x in xs):
        raise UsageError(f"{path}: the input arrays are empty or of different lengths")
    for i, x in enumerate(xs):
        finite = np.isfinite(x).all(axis=tuple(range(1, x.ndim))) if x.dtype.kind == "f" else None
        if finite is not None and not finite.all():
            raise UsageError(f"{path}: the inputs hold NaN or infinite values (example "
                             f"{int(np.argmin(finite))}{f' of input {i}' if len(xs) > 1 else ''}); "
                             "give finite numbers")
    if y is not None and (len(y) != n or y.min() < 0):
        raise UsageError(f"{path}: 'y' must hold one integer class index per example")
    order = np.random.default_rng(seed).permutation(n)
    n_eval = max(1, int(n * eval_fraction)) if y is not None else n
    ev, tr = order[:n_eval], order[n_eval:]

    def pick(idx):
        return [x[idx] for x in xs] if n_inputs > 1 else xs[0][idx]

    return Dataset(f"npz:{path.name}", pick(tr) if len(tr) else None,
                   y[tr] if y is not None and len(tr) else None, pick(ev),
                   y[ev] if y is not None else None, labels_meaningful=y is not None)


def _npz_arrays(path: Path, n_inputs: int) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The input arrays and ``y`` (or None) of an .npz, read as numbers after their headers
    were checked; the other members are never read."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            keys = ["x"] if n_inputs == 1 else [f"x_{i}" for i in range(n_inputs)]
            if n_inputs == 1 and "x" not in members and "x_0" in members:
                keys = ["x_0"]
            missing = [k for k in keys if k not in members]
            if missing:
                raise UsageError(f"{path} has no '{missing[0]}' array (it has: "
                                 f"{', '.join(members) or 'nothing'})")
            used = keys + (["y"] if "y" in members else [])
            headers = {k: _npy_header(archive, members[k], path, k) for k in used}
            total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
            if total > MAX_DATASET_BYTES:
                declared = ", ".join(f"{k} {list(shape)} {dtype}" for k, (shape, dtype) in headers.items())
                raise UsageError(f"{path}: its arrays ({declared}) take {total} bytes, more than the "
                                 f"{MAX_DATASET_BYTES} a data set may take")
            arrays = {}
            for k in used:
                with archive.open(members[k]) as member:
                    arrays[k] = np.lib.format.read_array(member, allow_pickle=False)
    except UsageError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, RuntimeError,
            NotImplementedError) as exc:  # what zipfile and numpy raise on a malformed file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{path} is not a readable .npz (a zip of .npy arrays, without pickled "
                         f"objects): {why}") from None
    return [arrays[k] for k in keys], arrays.get("y")


def _npy_header(archive: zipfile.ZipFile, member: str, path: Path, key: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from an .npy member's header, read without its data; refused unless it
    is an array of numbers (``y``: integers) with at least one axis."""
    from numpy.lib import format as npy

    with archive.open(member) as f:
        version = npy.read_magic(f)
        readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
        if version not in readers:
            raise UsageError(f"{path}: '{key}' is an .npy of version {version}, which holds named "
                             "fields, not an array of numbers")
        shape, _fortran, dtype = readers[version](f)
    if key == "y" and (dtype.kind not in "iu" or len(shape) != 1):
        raise UsageError(f"{path}: 'y' must hold one integer class index per example")
    if not shape:
        raise UsageError(f"{path}: '{key}' is a single value, not an array of examples")
    if dtype.kind not in "biuf":
        raise UsageError(f"{path}: '{key}' holds {dtype} values, not numbers"
                         + (" (Python objects are never unpickled)" if dtype.hasobject else ""))
    return shape, dtype


def synthetic_for(shapes: list[tuple[int, ...]], dtypes: list[str], ranges: list[tuple[float, float]],
                  n: int = 32, seed: int = 0) -> Dataset:
    """Seeded random inputs for a model of any input signature, in each input's float range
    (integer inputs without quantization get integers in [0, 16)): size and latency only."""
    rng = np.random.default_rng(seed)
    xs = []
    for shape, dtype, (low, high) in zip(shapes, dtypes, ranges):
        if np.issubdtype(np.dtype(dtype), np.integer) and (low, high) == (0, 0):
            xs.append(rng.integers(0, 16, size=(n, *shape)).astype(dtype))
        else:
            xs.append(rng.uniform(low, high, size=(n, *shape)).astype(np.float32))
    x = xs[0] if len(xs) == 1 else xs
    return Dataset("synthetic", None, None, x, None, labels_meaningful=False)
