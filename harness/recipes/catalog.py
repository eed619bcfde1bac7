"""A small catalog of named quantization recipes, each applied to a FLOAT .tflite by
``ai-edge-quantizer`` (Google's quantizer for converted LiteRT models, the ``quantizer`` extra).

The quantizer runs in a child process (``harness/recipes/worker.py``): a converter that aborts
or hangs becomes a recorded refusal, never a crash of the run. Results are cached in a folder
the caller gives, by a digest of the float file, the recipe (its name and definition), the
calibration inputs (static recipes only) and the quantizer's version. A recipe the quantizer
refuses is a ``RecipeArtifact`` with ``error`` set to its one-line reason (cached too: the same
inputs are refused the same way); a timeout or a crash is not cached. The float file may be a
user's own .tflite: the worker adds a serving signature when it has none and widens float16
weights first (``recipes.prepare``); ``details['prepared']`` says what it changed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np

from qat_harness.core.child import run_child
from qat_harness.core.errors import DeviceError

WORKER = "qat_harness.recipes.worker"
#: Bump when the worker's way of applying a recipe changes (it is part of every cache key).
CATALOG_VERSION = 2
#: Static recipes are calibrated on at most this many examples.
CALIBRATION_EXAMPLES = 32


@dataclasses.dataclass(frozen=True)
class RecipeSpec:
    """One named recipe. ``weight_bits`` / ``activation_bits`` are what the file stores
    (activation_bits None: float activations); ``kind`` is how the weights are used:
    'weight-only' (dequantized to float before a float kernel), 'dynamic' (activations
    quantized on the fly), 'static' (integer activations, needs calibration), 'float-cast'."""
    name: str
    description: str
    quantizer_recipe: str            # the ai-edge-quantizer recipe (function name or config)
    weight_bits: int
    activation_bits: int | None
    kind: str
    granularity: str = "channelwise"
    weight_dtype: str = "int"        # 'int' or 'float' (fp16)

    @property
    def needs_calibration(self) -> bool:
        return self.kind == "static"

    @property
    def label(self) -> str:
        acts = f"A{self.activation_bits}" if self.activation_bits else "Afp32"
        w = f"W{self.weight_bits}{'f' if self.weight_dtype == 'float' else ''}"
        return f"{w}{acts}"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "label": self.label}


RECIPES: dict[str, RecipeSpec] = {s.name: s for s in (
    RecipeSpec("int4-weight", "int4 weights (channelwise), dequantized to float before float kernels",
               "weight_only_wi4_afp32", 4, None, "weight-only"),
    RecipeSpec("int4-dynamic", "int4 weights (channelwise), activations quantized at run time",
               "dynamic_wi4_afp32", 4, None, "dynamic"),
    RecipeSpec("int4-blockwise", "int4 weights in blocks of 32 (fp16 block scales), dynamic-range",
               "dynamic_wi4b32_afp32", 4, None, "dynamic", granularity="blockwise-32"),
    RecipeSpec("16x8", "int16 activations, int8 weights (static, calibrated)",
               "static_wi8_ai16", 8, 16, "static"),
    RecipeSpec("int8-static", "int8 activations and weights (static, calibrated on the run's data)",
               "static_wi8_ai8", 8, 8, "static"),
    RecipeSpec("fp16-weights", "float16 weights, dequantized to float32 before float kernels",
               "float_casting fp16", 16, None, "float-cast", weight_dtype="float"),
    RecipeSpec("int8-dynamic", "int8 weights (channelwise), activations quantized at run time",
               "dynamic_wi8_afp32", 8, None, "dynamic"),
)}

#: What ``--recipes`` means when not given: none (the default run keeps its time budget);
#: ``--recipes default`` asks for this cheap set, ``--recipes all`` for every recipe.
DEFAULT_RECIPES: tuple[str, ...] = ("int4-weight", "int4-blockwise")


def parse_recipes(text: str | None) -> list[str]:
    """``--recipes`` value -> recipe names: comma-separated names, 'default', 'all' or 'none'.
    An unknown name is a ValueError naming the known ones."""
    if not text or text.strip() in ("", "none"):
        return []
    names: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        expanded = {"all": list(RECIPES), "default": list(DEFAULT_RECIPES)}.get(part, [part])
        for name in expanded:
            if name not in RECIPES:
                raise ValueError(f"unknown recipe '{name}' (known: {', '.join(RECIPES)}, default, all)")
            if name not in names:
                names.append(name)
    return names


def quantizer_version() -> str | None:
    if importlib.util.find_spec("ai_edge_quantizer") is None:
        return None
    try:
        return importlib.metadata.version("ai-edge-quantizer")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass
class RecipeArtifact:
    """A recipe applied to one float file: ``path`` when it converted, else ``error``."""
    recipe: str
    path: Path | None
    error: str | None = None
    from_cache: bool = False
    seconds: float | None = None
    quantizer_version: str | None = None
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def converted(self) -> bool:
        return self.path is not None and self.error is None

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "path": str(self.path) if self.path else None,
                "error": self.error, "from_cache": self.from_cache, "seconds": self.seconds,
                "quantizer_version": self.quantizer_version, "details": self.details}


#: Examples for a static recipe: one array (a one-input model) or one per input, in the .tflite's
#: input order (what ``tflite.model_inputs`` takes).
Calibration = np.ndarray | list[np.ndarray]


def _digest(float_path: Path, spec: RecipeSpec, calibration: list[np.ndarray] | None, version: str) -> str:
    h = hashlib.sha256()
    h.update(Path(float_path).read_bytes())
    from qat_harness.build.cache import source_digest

    # the code that applies a recipe is part of what determines the file (or the refusal)
    h.update(json.dumps({"recipe": spec.to_dict(), "version": version, "catalog": CATALOG_VERSION,
                         "code": source_digest(("qat_harness.recipes.worker",))}, sort_keys=True).encode())
    for array in calibration if spec.needs_calibration and calibration is not None else []:
        arr = np.ascontiguousarray(array)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:24]


def apply_recipe(float_path: Path, recipe: str, cache_dir: Path,
                 calibration: Calibration | None = None, timeout_s: float = 300.0,
                 use_cache: bool = True) -> RecipeArtifact:
    """Apply ``recipe`` to the float .tflite at ``float_path``; the quantized file lands in
    ``cache_dir``. Never raises for a refusal: the artifact carries the one-line reason."""
    spec = RECIPES[recipe]
    version = quantizer_version()
    if version is None:
        return RecipeArtifact(recipe, None, "ai-edge-quantizer is not installed: "
                              "pip install 'qat-harness[quantizer]'")
    arrays = None
    if spec.needs_calibration:
        if calibration is None:
            return RecipeArtifact(recipe, None, "a static recipe needs calibration inputs", quantizer_version=version)
        arrays = [np.asarray(a)[:CALIBRATION_EXAMPLES]
                  for a in (calibration if isinstance(calibration, list) else [calibration])]
    cache_dir = Path(cache_dir).resolve()  # the quantizer child works in a folder of its own
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _digest(float_path, spec, arrays, version)
    model_path = cache_dir / f"{recipe}-{key}.tflite"
    meta_path = cache_dir / f"{recipe}-{key}.json"
    if use_cache and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("error") or model_path.exists():
            return RecipeArtifact(recipe, None if meta.get("error") else model_path, meta.get("error"),
                                  True, meta.get("seconds"), version, meta.get("details", {}))
    t0 = time.perf_counter()
    tmp_model = cache_dir / f".{recipe}-{key}.{os.getpid()}.tflite"
    prepared = cache_dir / f".{recipe}-{key}.{os.getpid()}.float.tflite"
    request = {"float": str(Path(float_path).resolve()), "recipe": recipe, "out": str(tmp_model),
               "prepared": str(prepared)}
    cal_path = None
    try:
        if arrays is not None:
            cal_path = cache_dir / f".{recipe}-{key}.{os.getpid()}.cal.npz"
            np.savez(cal_path, *arrays)  # arr_0, arr_1, ...: the .tflite's input order
            request["calibration"] = str(cal_path)
        try:
            resp = run_child(WORKER, request, timeout_s)
        except DeviceError as exc:
            seconds = round(time.perf_counter() - t0, 3)
            reason = _one_line(exc.reason)
            if exc.kind in ("failed", "unsupported", "refused"):  # deterministic: cache the refusal
                meta_path.write_text(json.dumps({"error": reason, "seconds": seconds, "kind": exc.kind}))
            return RecipeArtifact(recipe, None, reason, False, seconds, version, {"kind": exc.kind})
        os.replace(tmp_model, model_path)
        seconds = round(time.perf_counter() - t0, 3)
        details = {k: v for k, v in resp.items() if k != "ok"}
        meta_path.write_text(json.dumps({"error": None, "seconds": seconds, "details": details}))
        return RecipeArtifact(recipe, model_path, None, False, seconds, version, details)
    finally:
        for p in (tmp_model, prepared, cal_path):
            if p is not None and p.exists():
                p.unlink()


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "refused")[:300]
