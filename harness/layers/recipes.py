"""The recipe axis of the layer matrix (``qat-harness layers --recipes ...``): which layers take
int4 (or 16x8, fp16, ...) weights, and whether the kernels agree on the result.

The probe child writes each probe's float .tflite (the Keras model before QAT, converted without
quantization) and the float model's outputs on the probe inputs. For every recipe of
``recipes.catalog`` the parent then judges, per probe, these stages (keys of ``recipe_stages``
in layers.json):

- ``recipe:float``          the float .tflite the recipes start from (once per probe);
- ``recipe:R:convert``      the recipe applied by ai-edge-quantizer (``catalog.apply_recipe``,
  cached by digest like the run's): PASS, FAIL with the quantizer's one-line refusal, SKIP
  when the ``quantizer`` extra is missing, ERROR when the quantizer child crashed or hung;
- ``recipe:R:weights``      the weight tensors of the layer under test, read from the recipe's
  flatbuffer: stored in the recipe's width (PASS), left float (WARN "not quantized by this
  recipe"), or SKIP "no weights" for a layer that has none;
- ``DEV:recipe:R``          per device: the file runs, its top-1 agrees with the float model,
  and the device agrees with the other kernels on the same file;
- ``recipe:R:kernels``      the cross-kernel verdict of ``recipes.stage.cross_kernel_claim``
  (K1) over every kernel that ran the file, the reference kernels always among them.

The verdicts are ``layers.recipe_stages``'s, the thresholds the claims'
(``claims.CrossKernelAgreement``, ``claims.EightBitOnly``): a kernel pair whose top-1 agreement
has a Wilson interval wholly below ``AGREEMENT_FAIL`` disagrees (FAIL), below ``AGREEMENT_PASS``
is a WARN; agreement with float is a WARN when its interval lies wholly below
``ACCURATE_AGREEMENT`` (what C6 calls accurate).
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from qat_harness.claims import CrossKernelAgreement, EightBitOnly
from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.devices.base import RunResult
from qat_harness.layers.cells import (
    FLOAT_KEY,
    StageCell,
    cell,
    convert_key,
    device_key,
    kernels_key,
    recipe_of,
    recipe_stage_keys,
    weights_key,
)
from qat_harness.layers.protocol import FloatModel
from qat_harness.layers.recipe_stages import (
    KernelRun,
    convert_stage,
    decision_rows,
    device_stage,
    kernels_stage,
    weights_stage,
)
from qat_harness.layers.tree import RecipeAxisInfo, RecipeThresholds
from qat_harness.measure.difference import TensorLike
from qat_harness.recipes import catalog
from qat_harness.recipes.catalog import RECIPES
from qat_harness.recipes.stage import as_float, cross_kernel_claim
from qat_harness.record.folder import safe_name
from qat_harness.results import Verdict

PASS, FAIL, SKIP, ERROR = Verdict.PASS, Verdict.FAIL, Verdict.SKIP, Verdict.ERROR

#: (device name, model file, typed inputs, work folder) -> the device's RunResult
Runner = Callable[[str, Path, np.ndarray, Path], RunResult]
Cells = dict[str, StageCell]


def recipe_verdicts(recipe_stages: dict[str, StageCell]) -> dict[str, Verdict]:
    """recipe -> the worst verdict among its cells, SKIPs aside (a weight-less layer's SKIP
    weights cell does not hide that the file runs); SKIP when nothing else ran."""
    out: dict[str, list[Verdict]] = {}
    for key, c in recipe_stages.items():
        recipe = recipe_of(key)
        if recipe is not None:
            out.setdefault(recipe, []).append(c.verdict)
    return {r: Verdict.worst([v for v in vs if v is not SKIP] or [SKIP]) for r, vs in out.items()}


def check_recipes(names: Iterable[str] | None) -> list[str]:
    """Recipe names for the axis; an unknown one is a UsageError naming the known ones."""
    names = list(names or [])
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise UsageError(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    return list(dict.fromkeys(names))


def thresholds() -> RecipeThresholds:
    return RecipeThresholds(CrossKernelAgreement.AGREEMENT_PASS, CrossKernelAgreement.AGREEMENT_FAIL,
                            EightBitOnly.ACCURATE_AGREEMENT)


# -- the axis -----------------------------------------------------------------------------------
class RecipeAxis:
    """Judges every recipe on one probe's float .tflite. ``devices`` are the matrix's listed
    devices; ``kernels`` the ones that run each recipe's file (the available listed devices plus
    the reference kernels, which judge cross-kernel agreement even when not listed); ``skipped``
    says why a listed device runs no recipe (not available, or no kernel at all)."""

    def __init__(self, recipes: list[str], devices: list[str], kernels: list[str],
                 skipped: dict[str, str], simulated: set[str], runner: Runner, cache_dir: Path,
                 timeout_s: float, oracle: str | None = None):
        self.recipes = check_recipes(recipes)
        self.oracle = oracle   # the reference kernels' name among the kernels: K1 blames against float, or them
        self.devices, self.kernels = list(devices), list(kernels)
        self.skipped, self.simulated = dict(skipped), set(simulated)
        self.runner, self.timeout_s = runner, timeout_s
        self.cache_dir = Path(cache_dir).resolve()  # the quantizer child runs in a folder of its own
        self.quantizer_version = catalog.quantizer_version()
        self._lock = threading.Lock()
        self._file_locks: dict[str, threading.Lock] = {}

    @property
    def wants_float_model(self) -> bool:
        """Whether the probe child should write the float .tflite: not when nothing can use it."""
        return self.quantizer_version is not None

    def keys(self) -> list[str]:
        return recipe_stage_keys(self.recipes, self.devices)

    def describe(self) -> RecipeAxisInfo:
        return RecipeAxisInfo({n: RECIPES[n] for n in self.recipes}, self.quantizer_version, self.kernels,
                              str(self.cache_dir), self.keys(), thresholds())

    def every_cell(self, verdict: Verdict, reason: str) -> Cells:
        return {k: cell(verdict, reason) for k in self.keys()}

    def judge(self, probe: str, float_model: FloatModel | None, single_io: bool, workdir: Path) -> Cells:
        """Every recipe cell of one probe, from what the child wrote (``float_model``; None when
        the child did not get that far)."""
        if self.quantizer_version is None:
            return self.every_cell(SKIP, "ai-edge-quantizer is not installed: pip install 'qat-harness[quantizer]'")
        if float_model is None:
            return self.every_cell(SKIP, "no float .tflite: the probe child did not reach it")
        cells = {FLOAT_KEY: cell(float_model.verdict, float_model.reason)}
        files = float_model.files
        if float_model.verdict is not PASS or not files.float_tflite:
            rest = self.every_cell(SKIP, f"no float .tflite: {float_model.reason}")
            rest.pop(FLOAT_KEY)
            return {**cells, **rest}
        float_path = Path(files.float_tflite)
        float_info = tflite.inspect_model(float_path)
        x = np.load(files.float_inputs, allow_pickle=False) if files.float_inputs else None
        float_out = np.load(files.float_outputs, allow_pickle=False) if files.float_outputs else None
        for recipe in self.recipes:
            try:
                cells.update(self._one(probe, recipe, float_path, float_info, float_model, x, float_out,
                                       single_io, workdir / "recipes" / safe_name(recipe)))
            except Exception as exc:  # noqa: BLE001 - a harness bug costs one recipe cell, not the matrix
                why = f"harness error: {type(exc).__name__}: {exc}"[:300]
                for k in recipe_stage_keys([recipe], self.devices)[1:]:
                    cells.setdefault(k, cell(ERROR, why))
        return cells

    def _one(self, probe: str, recipe: str, float_path: Path, float_info: tflite.ModelInfo,
             float_model: FloatModel, x: np.ndarray | None, float_out: np.ndarray | None, single_io: bool,
             workdir: Path) -> Cells:
        spec = RECIPES[recipe]
        device_keys = [device_key(d, recipe) for d in self.devices]
        with self._same_file_lock(float_path, recipe):
            artifact = catalog.apply_recipe(float_path, recipe, self.cache_dir, calibration=x,
                                            timeout_s=self.timeout_s)
        converted = convert_stage(artifact, spec, float_info.size_bytes)
        cells = {convert_key(recipe): converted}
        if not artifact.converted or artifact.path is None:
            why = f"{recipe} did not convert" if converted.verdict is not SKIP else converted.reason
            for k in (weights_key(recipe), *device_keys, kernels_key(recipe)):
                cells[k] = cell(SKIP, why)
            return cells
        try:
            info = tflite.inspect_model(artifact.path)
        except tflite.InvalidModel as exc:
            cells[convert_key(recipe)] = cell(FAIL, f"the quantizer wrote an unreadable file: {exc}")
            for k in (weights_key(recipe), *device_keys, kernels_key(recipe)):
                cells[k] = cell(SKIP, "the recipe's file cannot be read")
            return cells
        layers = float_model.layers or []
        cells[weights_key(recipe)] = (weights_stage(layers, float_info, info, spec) if layers
                                      else cell(SKIP, "the child did not describe the probe's layers"))
        if not single_io or x is None:
            for k in (*device_keys, kernels_key(recipe)):
                cells[k] = cell(SKIP, "the device adapters run one input and one output; this model has more")
            return cells
        cells.update(self._on_kernels(probe, recipe, artifact.path, info, x, float_out,
                                      float_info.tensor(float_info.outputs[0]), workdir))
        return cells

    def _same_file_lock(self, float_path: Path, recipe: str) -> threading.Lock:
        """Two probes whose float files are byte-identical share one cache entry, and
        apply_recipe names its temporary file by process: the two must not write it at once."""
        key = f"{recipe}:{hashlib.sha256(float_path.read_bytes()).hexdigest()}"
        with self._lock:
            return self._file_locks.setdefault(key, threading.Lock())

    def _on_kernels(self, probe: str, recipe: str, path: Path, info: tflite.ModelInfo, x: np.ndarray,
                    float_out: np.ndarray | None, float_tensor: TensorLike, workdir: Path) -> Cells:
        try:
            inputs = typed_inputs(info, x)
        except tflite.InputMismatch as exc:
            why = f"the probe inputs do not fit the recipe's file: {exc}"
            return {**{device_key(d, recipe): cell(FAIL, why) for d in self.devices},
                    kernels_key(recipe): cell(SKIP, why)}
        out_tensor = info.tensor(info.outputs[0])
        runs: dict[str, KernelRun] = {}
        for name in self.kernels:
            run = KernelRun(name, simulated=name in self.simulated)
            try:
                result = self.runner(name, path, inputs, workdir / safe_name(name))
                run.outputs = as_float(result.outputs, out_tensor)
                run.simulated = run.simulated or result.simulated
            except DeviceError as exc:
                run.error = exc
            runs[name] = run
        ran = {n: r.outputs for n, r in runs.items() if r.outputs is not None}
        claim, cross = cross_kernel_claim(probe, recipe, {n: decision_rows(out) for n, out in ran.items()},
                                          {n: (r.error.kind, r.error.reason) for n, r in runs.items()
                                           if r.error is not None},
                                          float_outputs=None if float_out is None else decision_rows(float_out),
                                          oracle=self.oracle if self.oracle in ran else None)
        for run in runs.values():
            run.compare_with_float(float_out, float_tensor)
        cells = {device_key(name, recipe): device_stage(runs[name], cross, runs) if name in runs
                 else cell(SKIP, self.skipped.get(name, "not run")) for name in self.devices}
        cells[kernels_key(recipe)] = kernels_stage(claim, cross)
        return cells


def typed_inputs(info: tflite.ModelInfo, x: np.ndarray) -> np.ndarray:
    """The probe inputs as the recipe's file takes them. Token ids arrive as whole floats
    (the probe child draws them so); an integer input gets them as integers."""
    try:
        return tflite.model_inputs(info, x)
    except tflite.InputMismatch:
        arr = np.asarray(x)
        if np.issubdtype(arr.dtype, np.floating) and np.array_equal(arr, np.round(arr)):
            return tflite.model_inputs(info, arr.astype(np.int64))
        raise
