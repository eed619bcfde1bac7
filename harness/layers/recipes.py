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

The thresholds are the claims' (``claims.CrossKernelAgreement``, ``claims.EightBitOnly``): a
kernel pair whose top-1 agreement has a Wilson interval wholly below ``AGREEMENT_FAIL`` disagrees
(FAIL), below ``AGREEMENT_PASS`` is a WARN; agreement with float is a WARN when its interval lies
wholly below ``ACCURATE_AGREEMENT`` (what C6 calls accurate).

Top-1 is the run's measure taken per output position: a probe's output is a feature map more
often than a score vector, and the arg-max of a whole flattened map follows its single largest
value (which a clipped int16 range or one int4 rounding moves) rather than what the layer
computes. So every position's channel vector is one decision (``decision_rows``); a (N, C)
output is exactly the run's top-1 per example.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qat_harness.claims import CrossKernelAgreement, EightBitOnly
from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError, UsageError
from qat_harness.devices.base import RunResult
from qat_harness.layers.stages import (
    ERROR,
    FAIL,
    PASS,
    SKIP,
    WARN,
    device_error_verdict,
)
from qat_harness.layers.stages import stage as cell
from qat_harness.recipes import catalog
from qat_harness.recipes.catalog import RECIPES, RecipeArtifact, RecipeSpec
from qat_harness.recipes.stage import (
    CrossKernel,
    as_float,
    cross_kernel_claim,
    top1_of,
)
from qat_harness.record.folder import safe_name
from qat_harness.results import Verdict
from qat_harness.stats import (
    OutputDifference,
    Proportion,
    output_difference,
    wilson_interval,
)

FLOAT_KEY = "recipe:float"
_MAX_LISTED = 4

#: (device name, model file, typed inputs, work folder) -> the device's RunResult
Runner = Callable[[str, Path, object, Path], RunResult]


def convert_key(recipe: str) -> str:
    return f"recipe:{recipe}:convert"


def weights_key(recipe: str) -> str:
    return f"recipe:{recipe}:weights"


def kernels_key(recipe: str) -> str:
    return f"recipe:{recipe}:kernels"


def device_key(device: str, recipe: str) -> str:
    return f"{device}:recipe:{recipe}"


def stage_keys(recipes: list[str], devices: list[str]) -> list[str]:
    keys = [FLOAT_KEY]
    for r in recipes:
        keys += [convert_key(r), weights_key(r), *[device_key(d, r) for d in devices], kernels_key(r)]
    return keys


def recipe_of(key: str) -> str | None:
    """The recipe a recipe-stage key belongs to (None for ``recipe:float``)."""
    if key.startswith("recipe:") and key.count(":") == 2:
        return key.split(":")[1]
    if ":recipe:" in key:
        return key.split(":recipe:", 1)[1]
    return None


def recipe_verdicts(recipe_stages: dict) -> dict[str, str]:
    """recipe -> the worst verdict among its cells, SKIPs aside (a weight-less layer's SKIP
    weights cell does not hide that the file runs); SKIP when nothing else ran."""
    out: dict[str, list[str]] = {}
    for key, c in recipe_stages.items():
        recipe = recipe_of(key)
        if recipe is not None:
            out.setdefault(recipe, []).append(c["verdict"])
    return {r: Verdict.worst([v for v in vs if v != SKIP] or [SKIP]).value for r, vs in out.items()}


def check_recipes(names) -> list[str]:
    """Recipe names for the axis; an unknown one is a UsageError naming the known ones."""
    names = list(names or [])
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise UsageError(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    return list(dict.fromkeys(names))


def thresholds() -> dict:
    return {"kernel_agreement_pass": CrossKernelAgreement.AGREEMENT_PASS,
            "kernel_agreement_fail": CrossKernelAgreement.AGREEMENT_FAIL,
            "float_agreement_warn_below": EightBitOnly.ACCURATE_AGREEMENT}


# -- the weights stage --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProbeLayer:
    """One Keras layer of a probe, as the child describes it."""
    name: str
    cls: str
    weights: int
    tested: bool

    @classmethod
    def from_child(cls, d: dict) -> ProbeLayer:
        return cls(str(d["name"]), str(d["class"]), int(d.get("weights", 0)), bool(d.get("tested")))


@dataclasses.dataclass(frozen=True)
class WeightTensor:
    """A layer's weight tensor: its float-file name, shape and the op that reads it, and its
    dtype in the recipe's file (None: no constant of that name there)."""
    layer: str
    tensor: str
    op: str
    shape: tuple
    dtype: str | None

    def text(self, dtype: bool = True) -> str:
        stored = f" {self.dtype or 'missing'}" if dtype else ""
        return f"{self.layer} {self.op}{stored} {list(self.shape)}"


def expected_weight_dtype(spec: RecipeSpec) -> str:
    return f"{'float' if spec.weight_dtype == 'float' else 'int'}{spec.weight_bits}"


def _name_segments(tensor_name: str) -> set[str]:
    # a converted tensor is named by its TF op path ('sequential/dense/MatMul'), several
    # fused ops joined by ';': every path segment may be a Keras layer name
    return {seg for part in tensor_name.split(";") for seg in part.split("/")}


def layer_weight_tensors(layers: list[ProbeLayer], float_info) -> dict[str, list]:
    """Keras layer name -> the float constants of the float .tflite named after it. A conv or
    fully-connected op's bias is not a weight here: recipes keep it in float or int32/int64 by
    design (a separable conv's zero depthwise bias is named after the layer, most are not)."""
    consumed = set(float_info.consumers())
    biases = {i for op in float_info.ops if op.opcode in tflite.WEIGHT_OPS
              for pos, i in enumerate(op.inputs) if i >= 0 and pos > tflite.WEIGHT_OPS[op.opcode][0]}
    out: dict[str, list] = {}
    for t in float_info.tensors:
        if not (t.is_constant and t.is_float and t.index in consumed) or t.index in biases:
            continue
        segments = _name_segments(t.name)
        for layer in layers:
            if layer.weights and layer.name in segments:
                out.setdefault(layer.name, []).append(t)
    return out


def _listed(items: list[str]) -> str:
    return ", ".join(items[:_MAX_LISTED]) + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def weights_stage(layers: list[ProbeLayer], float_info, recipe_info, spec: RecipeSpec) -> dict:
    """Are the weights of the layer under test stored in the recipe's width in its file?"""
    expected = expected_weight_dtype(spec)
    stored = {t.name: t.dtype for t in recipe_info.tensors if t.is_constant}
    by_layer = layer_weight_tensors(layers, float_info)
    reader = {t: float_info.ops[ops[0]].opcode for t, ops in float_info.consumers().items()}

    def tensors_of(group: list[ProbeLayer]) -> list[WeightTensor]:
        seen, out = set(), []
        for layer in group:
            for t in by_layer.get(layer.name, []):
                if t.index not in seen:
                    seen.add(t.index)
                    out.append(WeightTensor(layer.name, t.name, reader.get(t.index, "?"), tuple(t.shape),
                                            stored.get(t.name)))
        return out

    tested = [l for l in layers if l.tested]
    with_weights = [l for l in tested if l.weights]
    others = tensors_of([l for l in layers if not l.tested and l.weights])
    other_text = f"; the probe's other layers: {_listed([w.text() for w in others])}" if others else ""
    details = {"expected_dtype": expected, "layers": [l.name for l in tested],
               "others": [dataclasses.asdict(w) for w in others]}
    if not with_weights:
        classes = ", ".join(dict.fromkeys(l.cls for l in tested)) or "the layer"
        return cell(SKIP, f"no weights: {classes} has none{other_text}", tensors=[], **details)
    mine = tensors_of(with_weights)
    details["tensors"] = [dataclasses.asdict(w) for w in mine]
    folded = [l.cls for l in with_weights if not by_layer.get(l.name)]
    if not mine:
        return cell(SKIP, f"no weight tensor of its own in the float .tflite ({', '.join(folded)} "
                          f"folded into other ops){other_text}", **details)
    note = f"; {', '.join(folded)} folded into another op's weights" if folded else ""
    texts = _listed([w.text() for w in mine])
    if all(w.dtype == expected for w in mine):
        return cell(PASS, f"{expected}: {_listed([w.text(dtype=False) for w in mine])}{note}", **details)
    if all(w.dtype in tflite.FLOAT_DTYPES and w.dtype != expected for w in mine):
        return cell(WARN, f"not quantized by this recipe: {texts} (the recipe stores {expected}){note}",
                    **details)
    if not any(w.dtype == expected for w in mine):
        return cell(WARN, f"not in the recipe's {expected}: {texts}{note}", **details)
    return cell(WARN, f"partly {expected}: {texts}{note}", **details)


# -- the convert stage --------------------------------------------------------------------------
def convert_stage(artifact: RecipeArtifact, spec: RecipeSpec, float_size: int) -> dict:
    if artifact.converted:
        size = artifact.path.stat().st_size
        cached = ", from the cache" if artifact.from_cache else ""
        return cell(PASS, f"{spec.label} {spec.kind} file, {size} bytes ({size / float_size:.2f}x float){cached}",
                    size_bytes=size, size_ratio=round(size / float_size, 4), from_cache=artifact.from_cache,
                    seconds=artifact.seconds, path=str(artifact.path),
                    quantizer_version=artifact.quantizer_version)
    reason = artifact.error or "the quantizer gave no file"
    if artifact.quantizer_version is None:  # the extra is not installed
        return cell(SKIP, reason)
    kind = artifact.details.get("kind")
    if kind in ("crash", "timeout"):  # the child died or hung: not a refusal (and not cached)
        return cell(ERROR, f"the quantizer child {'hung' if kind == 'timeout' else 'died'}: {reason}",
                    kind=kind)
    return cell(FAIL, reason, **({"kind": kind} if kind else {}))


# -- the device stages --------------------------------------------------------------------------
def decision_rows(out: np.ndarray) -> np.ndarray:
    """One row per top-1 decision: each output position's channel vector, or each example's
    whole output when there is one channel (a lone value has no arg-max to compare)."""
    out = np.asarray(out)
    if out.ndim >= 2 and out.shape[-1] > 1:
        return out.reshape(-1, out.shape[-1])
    return out.reshape(len(out), -1)


@dataclasses.dataclass(frozen=True)
class FloatAgreement:
    """A kernel's outputs of the recipe's file against the float Keras model's."""
    top1: Proportion
    difference: OutputDifference

    def text(self) -> str:
        rate, top = self.top1.rate or 0.0, self.top1
        return (f"top-1 agrees with float at {rate:.1%} ({top.successes}/{top.n} decisions), max error "
                f"{(self.difference.max_rel or 0.0):.1%} of float's largest output")


def float_agreement(out: np.ndarray, float_out: np.ndarray, float_tensor) -> FloatAgreement:
    reference = float_out.reshape(out.shape).astype(np.float64)
    same = top1_of(decision_rows(out)) == top1_of(decision_rows(reference))
    return FloatAgreement(wilson_interval(int(np.sum(same)), int(same.size)),
                          output_difference(out.astype(np.float64), reference, float_tensor))


@dataclasses.dataclass
class KernelRun:
    """One kernel's run of a recipe's file: outputs in the float domain and their agreement
    with the float model (or why there is none), or why it did not run."""
    device: str
    outputs: np.ndarray | None = None
    error: DeviceError | None = None
    simulated: bool = False
    agreement: FloatAgreement | None = None
    agreement_note: str = ""        # why there is no agreement with float
    shape_mismatch: bool = False    # ...because the file computes another output shape (a FAIL)

    @property
    def ran(self) -> bool:
        return self.outputs is not None

    def compare_with_float(self, float_out: np.ndarray | None, float_tensor) -> None:
        if float_out is None:
            self.agreement_note = "no float outputs to compare with"
        elif float_out.size != self.outputs.size:
            self.agreement_note = f"output has {self.outputs.size} values, the float model {float_out.size}"
            self.shape_mismatch = True
        else:
            self.agreement = float_agreement(self.outputs, float_out, float_tensor)


def _pair_text(other: str, pair) -> str:
    diff = "n/a" if pair.max_abs is None else f"{pair.max_abs:.3g}"
    return f"{other} ({pair.agreement.rate:.1%} top-1 agreement, max abs diff {diff})"


def device_stage(run: KernelRun, cross: CrossKernel, runs: dict[str, KernelRun]) -> dict:
    """One listed device's cell for one recipe: it ran, how it agrees with float and with the
    other kernels (judged as ``recipes.stage`` judges K1)."""
    agreement = run.agreement
    if not run.ran:
        return cell(device_error_verdict(run.error), f"{run.error.kind}: {run.error.reason}")
    verdicts, parts, details = [PASS], [f"ran {len(run.outputs)} inputs"], {}
    if np.isnan(run.outputs).any():
        verdicts.append(FAIL)
        parts.append("NaN in its outputs")
    if agreement is not None:
        details["float_agreement"] = agreement.top1.to_dict()
        details["float_difference"] = agreement.difference.to_dict()
        parts.append(agreement.text())
        accurate = EightBitOnly.ACCURATE_AGREEMENT
        if agreement.top1.ci_high is not None and agreement.top1.ci_high < accurate:
            verdicts.append(WARN)
            parts[-1] += f" (interval {agreement.top1.ci_low:.0%}-{agreement.top1.ci_high:.0%}, below {accurate:.0%})"
    elif run.agreement_note:
        verdicts.append(FAIL if run.shape_mismatch else SKIP)
        parts.append(run.agreement_note)
    kernels = {}
    for pair in cross.pairs:
        if run.device not in (pair.a, pair.b):
            continue
        other = pair.b if pair.a == run.device else pair.a
        kernels[other] = {"top1_agreement": pair.agreement.to_dict(), "max_abs": pair.max_abs}
        clearly_apart = CrossKernelAgreement.apart(pair)
        if clearly_apart and other in cross.odd:
            parts.append(f"{other} disagrees with the other kernels, not this one")
        elif clearly_apart:
            verdicts.append(FAIL)
            parts.append(f"kernels disagree: {run.device} vs {_pair_text(other, pair)}"
                         + _further_from_float(run, runs.get(other)))
        elif (pair.agreement.rate or 0.0) < CrossKernelAgreement.AGREEMENT_PASS:
            verdicts.append(WARN)
            parts.append(f"vs {_pair_text(other, pair)}")
        else:
            parts.append(f"vs {_pair_text(other, pair)}")
    for other, why in cross.failed.items():
        if other != run.device:
            parts.append(f"{other} did not run it ({why[:120]})")
    if not kernels and not cross.failed:
        parts.append("no other kernel ran it")
    details["kernels"] = kernels
    verdict = Verdict.worst(v for v in verdicts if v != SKIP).value
    return cell(verdict, "; ".join(parts) + (" [SIMULATED device]" if run.simulated else ""), **details,
                **({"simulated": True} if run.simulated else {}))


def _further_from_float(mine: KernelRun, theirs: KernelRun | None) -> str:
    """Two kernels alone cannot tell which of them is right; the float model hints at it."""
    if theirs is None or mine.agreement is None or theirs.agreement is None:
        return ""
    a, b = mine.agreement.difference.max_abs, theirs.agreement.difference.max_abs
    if a is None or b is None or a == b:
        return ""
    further, near = (mine, theirs) if a > b else (theirs, mine)
    return (f"; {further.device} is the further from float (max abs {max(a, b):.3g} against "
            f"{near.device}'s {min(a, b):.3g})")


# -- the axis -----------------------------------------------------------------------------------
class RecipeAxis:
    """Judges every recipe on one probe's float .tflite. ``devices`` are the matrix's listed
    devices; ``kernels`` the ones that run each recipe's file (the available listed devices plus
    the reference kernels, which judge cross-kernel agreement even when not listed); ``skipped``
    says why a listed device runs no recipe (not available, or no kernel at all)."""

    def __init__(self, recipes: list[str], devices: list[str], kernels: list[str],
                 skipped: dict[str, str], simulated: set[str], runner: Runner, cache_dir: Path,
                 timeout_s: float):
        self.recipes = check_recipes(recipes)
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
        return stage_keys(self.recipes, self.devices)

    def describe(self) -> dict:
        return {"recipes": {n: RECIPES[n].to_dict() for n in self.recipes},
                "quantizer_version": self.quantizer_version, "kernels": self.kernels,
                "cache_dir": str(self.cache_dir), "stage_keys": self.keys(), "thresholds": thresholds()}

    def every_cell(self, verdict: str, reason: str) -> dict:
        return {k: cell(verdict, reason) for k in self.keys()}

    def judge(self, probe: str, float_result: dict | None, single_io: bool, workdir: Path) -> dict:
        """Every recipe cell of one probe, from what the child wrote (``float_result``: its
        ``float`` answer; None when the child did not get that far)."""
        if self.quantizer_version is None:
            return self.every_cell(SKIP, "ai-edge-quantizer is not installed: pip install 'qat-harness[quantizer]'")
        if not float_result:
            return self.every_cell(SKIP, "no float .tflite: the probe child did not reach it")
        cells = {FLOAT_KEY: cell(float_result.get("verdict", ERROR), float_result.get("reason", "no reason given"))}
        files = float_result.get("files", {})
        if cells[FLOAT_KEY]["verdict"] != PASS or not files.get("float_tflite"):
            rest = self.every_cell(SKIP, f"no float .tflite: {cells[FLOAT_KEY]['reason']}")
            rest.pop(FLOAT_KEY)
            return {**cells, **rest}
        float_path = Path(files["float_tflite"])
        float_info = tflite.inspect_model(float_path)
        layers = [ProbeLayer.from_child(d) for d in float_result.get("layers", [])]
        x = np.load(files["float_inputs"], allow_pickle=False) if files.get("float_inputs") else None
        float_out = np.load(files["float_outputs"], allow_pickle=False) if files.get("float_outputs") else None
        for recipe in self.recipes:
            try:
                cells.update(self._one(probe, recipe, float_path, float_info, layers, x, float_out, single_io,
                                       workdir / "recipes" / safe_name(recipe)))
            except Exception as exc:  # noqa: BLE001 - a harness bug costs one recipe cell, not the matrix
                why = f"harness error: {type(exc).__name__}: {exc}"[:300]
                for k in stage_keys([recipe], self.devices)[1:]:
                    cells.setdefault(k, cell(ERROR, why))
        return cells

    def _one(self, probe: str, recipe: str, float_path: Path, float_info, layers: list[ProbeLayer], x,
             float_out, single_io: bool, workdir: Path) -> dict:
        spec = RECIPES[recipe]
        device_keys = [device_key(d, recipe) for d in self.devices]
        with self._same_file_lock(float_path, recipe):
            artifact = catalog.apply_recipe(float_path, recipe, self.cache_dir, calibration=x,
                                            timeout_s=self.timeout_s)
        cells = {convert_key(recipe): convert_stage(artifact, spec, float_info.size_bytes)}
        if not artifact.converted:
            why = f"{recipe} did not convert" if cells[convert_key(recipe)]["verdict"] != SKIP \
                else cells[convert_key(recipe)]["reason"]
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

    def _on_kernels(self, probe: str, recipe: str, path: Path, info, x, float_out, float_tensor,
                    workdir: Path) -> dict:
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
        claim, cross = cross_kernel_claim(probe, recipe,
                                          {n: decision_rows(r.outputs) for n, r in runs.items() if r.ran},
                                          {n: (r.error.kind, r.error.reason) for n, r in runs.items()
                                           if not r.ran})
        for run in runs.values():
            if run.ran:
                run.compare_with_float(float_out, float_tensor)
        cells = {}
        for name in self.devices:
            if name not in runs:
                cells[device_key(name, recipe)] = cell(SKIP, self.skipped.get(name, "not run"))
                continue
            cells[device_key(name, recipe)] = device_stage(runs[name], cross, runs)
        cells[kernels_key(recipe)] = cell(claim.verdict.value, claim.reason, measured=claim.measured,
                                          kernels=cross.kernels, odd=cross.odd, failed=cross.failed)
        return cells


def typed_inputs(info, x: np.ndarray):
    """The probe inputs as the recipe's file takes them. Token ids arrive as whole floats
    (the probe child draws them so); an integer input gets them as integers."""
    try:
        return tflite.model_inputs(info, x)
    except tflite.InputMismatch:
        arr = np.asarray(x)
        if np.issubdtype(arr.dtype, np.floating) and np.array_equal(arr, np.round(arr)):
            return tflite.model_inputs(info, arr.astype(np.int64))
        raise
