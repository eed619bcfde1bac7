"""The recipe stage: every named recipe (``catalog``) applied to a model's float .tflite, run on
every kernel, and judged.

For each recipe x device it measures the size ratio against the float file, the latency (the
recipe's file and the float file timed together in ABBA blocks, their ratio with a bootstrap
interval), the agreement of top-1 with the float model on the same kernel (Wilson interval)
and the output difference against it. Two kinds of verdicts come out:

- the cross-kernel claim (K1) per recipe: the same file's outputs on XNNPACK (``cpu``), LiteRT's
  built-in kernels without delegates (``cpu-builtin``, added here), the reference kernels
  (``cpu-ref``) and OpenVINO when present. A kernel that disagrees with the others on the same
  file is a FAIL with the numbers (top-1 agreement between kernels, max abs difference),
  whatever the recipe: the kernels implement one op set and one file has one meaning. Which
  kernel is wrong is told against float, not by majority: every kernel's outputs on the
  recipe's file are compared with ONE float reference, the float file's outputs on the
  reference kernels (on the first kernel that ran it when they did not), and of two kernels
  that disagree the further is blamed. One reference for all, not float on the same kernel: a
  kernel that computes the float file wrong as well would otherwise look right.
- C6 (8-bit only) re-judged (``c6_claim``): which bit widths have a deployment path today
  (converts, loads, runs), which are smaller, faster and accurate, with a table for the report.

Both rest on what each recipe's file stores (``recipes.stored``), not on the recipe's name: a
recipe that quantized nothing (its file is the float model) is not run, is no deployment path
for C6 and no kernel comparison for K1. The float file may be the user's own float .tflite (fp32,
or fp16 weights behind DEQUANTIZE, with or without a serving signature): the recipe worker
prepares it for the quantizer (``recipes.prepare``).

This module measures; the claims (``qat_harness.claims``) judge. A K1 result's ``device`` is
``recipe:<name>`` (the claim is about one file across kernels) and its details name the kernels.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qat_harness.claims import (
    CrossKernelAgreement,
    EightBitOnly,
    KernelComparison,
    KernelPair,
    OtherWidthRecipe,
)
from qat_harness.claims.tolerances import KERNEL_VALUES_AGREE_REL
from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import BenchSettings, Device, Role
from qat_harness.devices.litert.cpu import BuiltinKernelsDevice, LiteRTDevice
from qat_harness.measure.difference import OutputDifference, output_difference
from qat_harness.measure.output_kinds import OutputKind, Task, classify_outputs, label_classes
from qat_harness.recipes.catalog import (
    RECIPES,
    Calibration,
    RecipeArtifact,
    RecipeSpec,
    apply_recipe,
)
from qat_harness.recipes.stored import StoredWidths, stored_widths
from qat_harness.results import ClaimResult
from qat_harness.stats import (
    LatencySummary,
    Proportion,
    RatioCI,
    latency_summary,
    ratio_of_medians_ci,
    wilson_interval,
)

if TYPE_CHECKING:
    from qat_harness.devices.device_set import DeviceSet


# -- typed results -------------------------------------------------------------------------------
@dataclasses.dataclass
class RecipeDeviceResult:
    """One file (a recipe's, or the float one) on one device."""
    recipe: str
    device: str
    ran: bool
    error: str | None = None
    error_kind: str | None = None
    agreement: Proportion | None = None           # top-1 vs the float model on the same kernel
    difference: OutputDifference | None = None    # first output vs the float model, float domain
    top1_accuracy: float | None = None            # against labels, when given
    classes_predicted: int | None = None
    nan_outputs: bool = False
    latency: LatencySummary | None = None
    float_latency: LatencySummary | None = None
    latency_ratio: RatioCI | None = None          # median(recipe) / median(float), same device
    latency_note: str | None = None


@dataclasses.dataclass
class CrossKernel:
    kernels: list[str]
    pairs: list[KernelPair]
    odd: list[str]                                  # kernels blamed: further from float (or the oracle)
    failed: dict[str, str]                          # kernel -> why it did not run the file


@dataclasses.dataclass
class RecipeResult:
    recipe: str
    spec: RecipeSpec
    artifact: RecipeArtifact
    size_bytes: int | None = None
    size_ratio: float | None = None                 # size(recipe) / size(float)
    tensor_dtypes: dict[str, int] = dataclasses.field(default_factory=dict)
    stored: StoredWidths | None = None              # what the file stores beyond the float file
    devices: dict[str, RecipeDeviceResult] = dataclasses.field(default_factory=dict)
    cross_kernel: CrossKernel | None = None

    @property
    def bits(self) -> str:
        """The widths the file stores ('W4Afp32', 'quantized nothing'), '—' without a file."""
        return self.stored.label if self.stored else "—"


@dataclasses.dataclass
class C6Table:
    """The C6 table of report.md, as data: ``rows`` are dicts keyed by ``columns``."""
    columns: list[str]
    rows: list[dict[str, str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in self.columns) + " |" for r in self.rows]
        return "\n".join(lines)


@dataclasses.dataclass
class RecipeResults:
    model: str
    float_path: Path
    float_size: int
    float_runs: dict[str, RecipeDeviceResult]
    recipes: dict[str, RecipeResult]
    claims: list[ClaimResult]
    c6_table: C6Table | None = None
    reference_device: str | None = None             # where "agreement" and latency are headlined
    agreement_unit: str = "top-1 agreement"         # what K1's agreement counts (``agreement_unit``)


# -- the stage ---------------------------------------------------------------------------------------
def kernel_devices(devices: dict[str, Device] | DeviceSet, num_threads: int,
                   add_builtin: bool = True) -> dict[str, Device]:
    """The devices the recipes run on: every requested one but the overhead probe, plus the
    built-in kernels when a LiteRT device is there and they are not."""
    kernels = {n: d for n, d in devices.items() if d.role is not Role.OVERHEAD}
    has_litert = any(isinstance(d, LiteRTDevice) for d in kernels.values())
    has_builtin = any(d.kernel == BuiltinKernelsDevice.kernel for d in kernels.values())
    if add_builtin and has_litert and not has_builtin:
        kernels[BuiltinKernelsDevice.name] = BuiltinKernelsDevice(num_threads)
    return kernels


def judge_recipes(model: str, float_path: Path, recipes: list[str], devices: dict[str, Device] | DeviceSet,
                  eval_inputs: np.ndarray | list[np.ndarray], workdir: Path, num_threads: int, *,
                  labels: np.ndarray | None = None, calibration: Calibration | None = None,
                  add_builtin: bool = True, timing: BenchSettings | None = None,
                  use_cache: bool = True, task: Task | None = None, progress=lambda msg: None) -> RecipeResults:
    """Apply each recipe to ``float_path`` (cached in ``workdir / 'recipes'``), run it on every
    kernel with ``eval_inputs`` (float examples, the float model's domain: one array, or one per
    input in the .tflite's input order) and judge it. ``float_path`` is the run's float reference
    or the user's float .tflite; static recipes calibrate on ``calibration`` (else on the first
    ``eval_inputs``)."""
    float_path = Path(float_path)
    kernels = kernel_devices(devices, num_threads, add_builtin)
    float_info = tflite.inspect_model(float_path)
    class_scores = classify_outputs(float_info, task, label_classes(labels))[0].kind is OutputKind.CLASS_SCORES
    outputs: dict[str, dict[str, np.ndarray]] = {"float": {}}
    float_runs: dict[str, RecipeDeviceResult] = {}
    for dev_name, dev in kernels.items():
        res, out = _run(dev, float_path, float_info, eval_inputs, "float", dev_name, labels)
        float_runs[dev_name] = res
        if out is not None:
            outputs["float"][dev_name] = out
    float_any = next(iter(outputs["float"].values()), None)
    oracle = _oracle_device(kernels)
    float_on = oracle if oracle in outputs["float"] else next(iter(outputs["float"]), None)
    float_target = outputs["float"].get(float_on) if float_on is not None else None

    results: dict[str, RecipeResult] = {}
    claims: list[ClaimResult] = []
    cal = calibration if calibration is not None else eval_inputs
    for name in recipes:
        spec = RECIPES[name]
        progress(f"{model}: recipe {name}")
        artifact = apply_recipe(float_path, name, Path(workdir) / "recipes", cal, use_cache=use_cache)
        rr = RecipeResult(name, spec, artifact)
        results[name] = rr
        if not artifact.converted:
            claims.append(CrossKernelAgreement.not_compared(model, name, f"{name} did not convert: {artifact.error}"))
            continue
        assert artifact.path is not None  # converted
        info = tflite.inspect_model(artifact.path)
        rr.size_bytes = info.size_bytes
        rr.size_ratio = info.size_bytes / float_info.size_bytes
        for t in info.tensors:
            rr.tensor_dtypes[t.dtype] = rr.tensor_dtypes.get(t.dtype, 0) + 1
        rr.stored = stored_widths(info, float_info)
        if rr.stored.quantized_nothing:
            claims.append(CrossKernelAgreement.not_compared(model, name, f"{name} {rr.stored.describe()}"))
            continue
        outputs[name] = {}
        errors: dict[str, tuple[str, str]] = {}
        for dev_name, dev in kernels.items():
            res, out = _run(dev, artifact.path, info, eval_inputs, name, dev_name, labels)
            rr.devices[dev_name] = res
            if out is None:
                errors[dev_name] = (res.error_kind or "failed", res.error or "")
                continue
            outputs[name][dev_name] = out
            base = outputs["float"].get(dev_name, float_any)
            if base is not None:
                if class_scores:  # any other output is judged on its difference (SQNR) to float
                    res.agreement = _agreement(out, base)
                res.difference = output_difference(out.astype(np.float64), base.astype(np.float64))
        claim, cross = cross_kernel_claim(model, name, outputs[name], errors, float_outputs=float_target,
                                          float_on=float_on, oracle=oracle, class_scores=class_scores)
        rr.cross_kernel = cross
        claims.append(claim)

    _time_all(kernels, float_path, float_info, results, float_runs, eval_inputs, num_threads, timing, progress)
    judged = RecipeResults(model, float_path, float_info.size_bytes, float_runs, results, claims,
                           reference_device=_reference_device(kernels), agreement_unit=agreement_unit(class_scores))
    judged.claims.append(c6_claim(judged))
    judged.c6_table = c6_table(judged)
    return judged


def _oracle_device(kernels: dict[str, Device]) -> str | None:
    """The reference kernels among the kernels, if they are there."""
    return next((name for name, dev in kernels.items() if dev.role is Role.ORACLE), None)


def _reference_device(kernels: dict[str, Device]) -> str | None:
    for name, dev in kernels.items():
        if dev.role is Role.HOST_CPU:
            return name
    return next(iter(kernels), None)


def _run(dev: Device, path: Path, info, x, label: str, dev_name: str,
         labels: np.ndarray | None) -> tuple[RecipeDeviceResult, np.ndarray | None]:
    try:
        result = dev.run(path, tflite.model_inputs(info, x))
    except (DeviceError, tflite.InputMismatch) as exc:
        kind = getattr(exc, "kind", "failed")
        return RecipeDeviceResult(label, dev_name, False, getattr(exc, "reason", str(exc)), kind), None
    out = as_float(result.outputs, info.tensor(info.outputs[0]))
    res = RecipeDeviceResult(label, dev_name, True)
    top1 = top1_of(out)
    res.classes_predicted = len(np.unique(top1))
    res.nan_outputs = bool(np.isnan(out).any())
    if labels is not None and len(labels) == len(top1):
        res.top1_accuracy = float(np.mean(top1 == np.asarray(labels)))
    return res, out


def as_float(outputs: np.ndarray, tensor) -> np.ndarray:
    """An output in the float domain: quantized outputs dequantized with their own scale."""
    a = np.asarray(outputs)
    if np.issubdtype(a.dtype, np.integer) and tensor.scales:
        return tflite.dequantize(a, tensor.scales[0], tensor.zero_points[0]).astype(np.float64)
    return a.astype(np.float64)


def top1_of(out: np.ndarray) -> np.ndarray:
    flat = np.asarray(out).reshape(len(out), -1)
    return np.nanargmax(np.where(np.isnan(flat), -np.inf, flat), axis=1) if flat.size else np.zeros(0, int)


def _agreement(a: np.ndarray, b: np.ndarray, class_scores: bool = True) -> Proportion:
    """How often two runs agree on an input: the same top-1 on class scores; on any other
    output (a box, a mask), all of the input's values within a share of the output's range."""
    if class_scores:
        ta, tb = top1_of(a), top1_of(b)
        return wilson_interval(int(np.sum(ta == tb)), len(ta))
    fa, fb = (np.asarray(v, np.float64).reshape(len(v), -1) for v in (a, b))
    scale = max(float(np.nanmax(np.abs(fb))) if fb.size else 0.0, 1e-12)
    close = np.all(np.abs(fa - fb) <= KERNEL_VALUES_AGREE_REL * scale, axis=1)
    return wilson_interval(int(np.sum(close)), len(close))


def agreement_unit(class_scores: bool) -> str:
    return ("top-1 agreement" if class_scores else
            f"agreement within {KERNEL_VALUES_AGREE_REL:.0%} of the output's range")


def _max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(np.nanmax(d)) if d.size and not np.isnan(d).all() else None


def _time_all(kernels, float_path, float_info, results, float_runs, x, num_threads, timing, progress) -> None:
    """On every timed device, the float file and every recipe that ran there, in one ABBA
    benchmark (same input, same threads). Oracles (the reference kernels) are not timed."""
    settings = timing or BenchSettings(warmup_runs=3, min_runs=20, min_seconds=0.3, max_runs=400,
                                       num_threads=num_threads)
    first = x[:1] if not isinstance(x, list) else [a[:1] for a in x]
    for dev_name, dev in kernels.items():
        if dev.role is Role.ORACLE:
            for rr in results.values():
                if dev_name in rr.devices:
                    rr.devices[dev_name].latency_note = "oracle: not timed"
            continue
        if not float_runs.get(dev_name) or not float_runs[dev_name].ran:
            continue
        models = {"float": float_path}
        samples = {"float": tflite.model_inputs(float_info, first)}
        for name, rr in results.items():
            res = rr.devices.get(dev_name)
            if res is not None and res.ran:
                models[name] = rr.artifact.path
                samples[name] = tflite.model_inputs(tflite.inspect_model(rr.artifact.path), first)
        if len(models) == 1:
            continue
        progress(f"timing {len(models) - 1} recipe(s) against float on {dev_name}")
        try:
            bench = dev.benchmark(models, samples, settings)
        except DeviceError as exc:
            for name in models:
                if name != "float":
                    results[name].devices[dev_name].latency_note = f"timing failed: {exc.reason}"
            continue
        float_times = bench.times_ms["float"]
        float_runs[dev_name].latency = latency_summary(float_times)
        for name in models:
            if name == "float":
                continue
            res = results[name].devices[dev_name]
            res.latency = latency_summary(bench.times_ms[name])
            res.float_latency = float_runs[dev_name].latency
            res.latency_ratio = ratio_of_medians_ci(bench.times_ms[name], float_times)


# -- K1: cross-kernel agreement -----------------------------------------------------------------------
def compare_kernels(recipe: str, outputs: dict[str, np.ndarray],
                    errors: dict[str, tuple[str, str]] | None = None, *,
                    float_outputs: np.ndarray | None = None, float_on: str | None = None,
                    oracle: str | None = None, class_scores: bool = True) -> KernelComparison:
    """One file's outputs (float domain, examples first) on several kernels, pair by pair, and
    each kernel's against one reference that tells which of two disagreeing kernels is wrong:
    ``float_outputs`` (the float file's outputs on kernel ``float_on``), else the outputs of the
    reference kernels ``oracle`` on the same file, else none (the majority decides).
    ``errors`` maps a kernel that did not run the file to (kind, reason)."""
    names = list(outputs)
    pairs = [KernelPair(a, b, _agreement(outputs[a], outputs[b], class_scores), _max_abs(outputs[a], outputs[b]))
             for i, a in enumerate(names) for b in names[i + 1:]]
    top1 = {n: top1_of(outputs[n]) for n in names} if class_scores else {}
    reference, against = None, None
    if float_outputs is not None:
        reference, against = float_outputs, f"float (on {float_on})" if float_on else "float"
    elif oracle is not None and oracle in outputs:
        reference, against = outputs[oracle], f"the reference kernels ({oracle})"
    from_reference = {}
    if reference is not None:
        for n in names:
            try:
                from_reference[n] = output_difference(np.asarray(outputs[n], np.float64),
                                                      np.asarray(reference, np.float64))
            except ValueError:   # another shape than the reference's: no distance to it
                continue
    return KernelComparison(recipe, names, pairs, [n for n in names if np.isnan(outputs[n]).any()],
                            {n: len(np.unique(t)) for n, t in top1.items()},
                            {n: int(t[0]) if len(t) else None for n, t in top1.items()}, dict(errors or {}),
                            against if from_reference else None, from_reference, agreement_unit(class_scores))


def cross_kernel_claim(model: str, recipe: str, outputs: dict[str, np.ndarray],
                       errors: dict[str, tuple[str, str]] | None = None, *,
                       float_outputs: np.ndarray | None = None, float_on: str | None = None,
                       oracle: str | None = None, class_scores: bool = True) -> tuple[ClaimResult, CrossKernel]:
    """K1 on one file's outputs on several kernels (see ``compare_kernels``), and the record
    of the comparison."""
    comparison = compare_kernels(recipe, outputs, errors, float_outputs=float_outputs, float_on=float_on,
                                 oracle=oracle, class_scores=class_scores)
    cross = CrossKernel(comparison.kernels, comparison.pairs, CrossKernelAgreement.blamed(comparison),
                        {k: f"{kind}: {reason}" for k, (kind, reason) in comparison.failed.items()})
    return CrossKernelAgreement.judge(model, comparison), cross


# -- C6 re-judged --------------------------------------------------------------------------------------
def _headline(results: RecipeResults, rr: RecipeResult) -> RecipeDeviceResult | None:
    ref = results.reference_device
    if ref and ref in rr.devices and rr.devices[ref].ran:
        return rr.devices[ref]
    return next((d for d in rr.devices.values() if d.ran), None)


def c6_claim(results: RecipeResults | list[RecipeResults]) -> ClaimResult:
    """C6 ("8-bit only; other bit widths have no deployment path") judged against today's
    stack on the recipes of another bit width: a bit width has a deployment path when its file
    converts, loads and runs on a LiteRT kernel without NaNs."""
    runs = results if isinstance(results, list) else [results]
    return EightBitOnly.judge_recipes(runs[0].model if len(runs) == 1 else "recipes", other_widths(runs))


def other_widths(runs: list[RecipeResults]) -> dict[str, OtherWidthRecipe]:
    """Every recipe of another bit width that was run, by name (``model/name`` across models):
    the width its file stores when it converted (a recipe that quantized nothing is listed as
    such), the width it asks for when it was refused."""
    rows = {}
    for res in runs:
        for name, rr in res.recipes.items():
            if not _bears_on_c6(rr):
                continue
            stored = rr.stored if rr.artifact.converted else None
            head = _headline(res, rr)
            lat = head.latency_ratio if head else None
            ran = [d for d, r in rr.devices.items() if r.ran and not r.nan_outputs]
            error = rr.artifact.error or (None if ran or not rr.devices else _not_loaded(rr))
            rows[f"{res.model}/{name}" if len(runs) > 1 else name] = OtherWidthRecipe(
                res.model, name, stored.label if stored else f"{rr.spec.label} (asked)", rr.artifact.converted,
                ran, rr.size_ratio, head.agreement.rate if head and head.agreement else None,
                lat.ratio if lat else None, [lat.ci_low, lat.ci_high] if lat else None, error,
                quantized_nothing=bool(stored and stored.quantized_nothing))
    return rows


def _bears_on_c6(rr: RecipeResult) -> bool:
    """A file of another width than 8 bits, or a recipe of another width that was refused or
    quantized nothing (C6 says so, and counts neither as a deployment path)."""
    asks_other = EightBitOnly.is_other_width(rr.spec.weight_bits, rr.spec.activation_bits)
    if rr.artifact.converted and rr.stored is not None:
        return rr.stored.is_other_width or (rr.stored.quantized_nothing and asks_other)
    return asks_other


def _not_loaded(rr: RecipeResult) -> str:
    """Why no kernel ran the recipe's file, in one line (the kernel's own line when it gave one)."""
    return CrossKernelAgreement.not_loaded({d: (r.error_kind or "failed", r.error or "")
                                            for d, r in rr.devices.items() if not r.ran})


C6_COLUMNS = ["recipe", "bits", "converts", "runs on", "size vs float", "latency vs float",
              "agreement with float", "cross-kernel"]


def _agreement_cell(head: RecipeDeviceResult | None, unit: str) -> str:
    if head and head.agreement:
        return f"{head.agreement.rate:.1%} {unit} ({head.device})"
    if head and head.difference and head.difference.sqnr_db is not None:
        return f"SQNR {head.difference.sqnr_db:.1f} dB ({head.device})"
    return "—"


def c6_table(results: RecipeResults | list[RecipeResults]) -> C6Table:
    """One row per recipe (every recipe, 8-bit ones included, so the widths can be compared):
    what the report's C6 table shows."""
    runs = results if isinstance(results, list) else [results]
    k1 = {}
    for res in runs:
        for c in res.claims:
            if c.id == CrossKernelAgreement.id:
                k1[(res.model, c.details.get("recipe"))] = c.verdict.value
    rows = []
    for res in runs:
        for name, rr in res.recipes.items():
            head = _headline(res, rr)
            ran_on = [d for d, r in rr.devices.items() if r.ran and not r.nan_outputs]
            failed = [d for d, r in rr.devices.items() if not r.ran or r.nan_outputs]
            if head and head.latency_ratio:
                lr = head.latency_ratio
                lat = f"{lr.ratio:.2f}x" + (f" [{lr.ci_low:.2f}, {lr.ci_high:.2f}]" if lr.ci_low is not None else "") \
                    + f" ({head.device})"
            else:
                lat = "—"
            if not rr.artifact.converted:
                converts = f"no: {rr.artifact.error}"
            elif rr.stored and rr.stored.quantized_nothing:
                converts = "yes, but it quantized nothing (not run: the file is the float model)"
            else:
                converts = "yes"
            rows.append({
                "recipe": name if len(runs) == 1 else f"{res.model}/{name}",
                "bits": rr.bits,
                "converts": converts,
                "runs on": (", ".join(ran_on) or "—") + (f" (not: {', '.join(failed)})" if failed else ""),
                "size vs float": f"{rr.size_ratio:.2f}x" if rr.size_ratio is not None else "—",
                "latency vs float": lat,
                "agreement with float": _agreement_cell(head, res.agreement_unit),
                "cross-kernel": k1.get((res.model, name), "—"),
            })
    return C6Table(list(C6_COLUMNS), rows)
