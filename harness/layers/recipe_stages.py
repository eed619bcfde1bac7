"""The verdicts of the recipe cells of one probe (``layers --recipes``; the axis that runs them is
``layers.recipes``): the recipe's file as converted, the weights of the layer under test as stored
in it, each kernel's run of it against the float model and the other kernels, and K1 over them.

Top-1 is the run's measure taken per output position: a probe's output is a feature map more
often than a score vector, and the arg-max of a whole flattened map follows its single largest
value (which a clipped int16 range or one int4 rounding moves) rather than what the layer
computes. So every position's channel vector is one decision (``decision_rows``); a (N, C)
output is exactly the run's top-1 per example."""
from __future__ import annotations

import dataclasses

import numpy as np

from qat_harness.claims import CrossKernelAgreement, EightBitOnly
from qat_harness.claims.kernels import KernelPair
from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError
from qat_harness.layers.cells import (
    ConvertDetails,
    KernelPairDetails,
    KernelsDetails,
    RecipeDeviceDetails,
    StageCell,
    WeightsDetails,
    WeightTensor,
    cell,
)
from qat_harness.layers.protocol import ProbeLayer
from qat_harness.layers.stages import device_error_verdict
from qat_harness.measure.difference import OutputDifference, TensorLike, output_difference
from qat_harness.recipes.catalog import RecipeArtifact, RecipeSpec
from qat_harness.recipes.stage import CrossKernel, top1_of
from qat_harness.results import ClaimResult, Verdict
from qat_harness.stats import Proportion, wilson_interval

PASS, WARN, FAIL, SKIP, ERROR = Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP, Verdict.ERROR
_MAX_LISTED = 4


# -- the weights stage --------------------------------------------------------------------------
def expected_weight_dtype(spec: RecipeSpec) -> str:
    return f"{'float' if spec.weight_dtype == 'float' else 'int'}{spec.weight_bits}"


def _name_segments(tensor_name: str) -> set[str]:
    # a converted tensor is named by its TF op path ('sequential/dense/MatMul'), several
    # fused ops joined by ';': every path segment may be a Keras layer name
    return {seg for part in tensor_name.split(";") for seg in part.split("/")}


def layer_weight_tensors(layers: list[ProbeLayer], float_info: tflite.ModelInfo) -> dict[str, list[tflite.TensorInfo]]:
    """Keras layer name -> the float constants of the float .tflite named after it. A conv or
    fully-connected op's bias is not a weight here: recipes keep it in float or int32/int64 by
    design (a separable conv's zero depthwise bias is named after the layer, most are not)."""
    consumed = set(float_info.consumers())
    biases = {i for op in float_info.ops if op.opcode in tflite.WEIGHT_OPS
              for pos, i in enumerate(op.inputs) if i >= 0 and pos > tflite.WEIGHT_OPS[op.opcode][0]}
    out: dict[str, list[tflite.TensorInfo]] = {}
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


def weights_stage(layers: list[ProbeLayer], float_info: tflite.ModelInfo, recipe_info: tflite.ModelInfo,
                  spec: RecipeSpec) -> StageCell:
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

    tested = [layer for layer in layers if layer.tested]
    with_weights = [layer for layer in tested if layer.weights]
    others = tensors_of([layer for layer in layers if not layer.tested and layer.weights])
    other_text = f"; the probe's other layers: {_listed([w.text() for w in others])}" if others else ""
    details = WeightsDetails(expected, [layer.name for layer in tested], others)
    if not with_weights:
        classes = ", ".join(dict.fromkeys(layer.cls for layer in tested)) or "the layer"
        return cell(SKIP, f"no weights: {classes} has none{other_text}", details)
    mine = tensors_of(with_weights)
    details = dataclasses.replace(details, tensors=mine)
    folded = [layer.cls for layer in with_weights if not by_layer.get(layer.name)]
    if not mine:
        return cell(SKIP, f"no weight tensor of its own in the float .tflite ({', '.join(folded)} "
                          f"folded into other ops){other_text}", details)
    note = f"; {', '.join(folded)} folded into another op's weights" if folded else ""
    texts = _listed([w.text() for w in mine])
    if all(w.dtype == expected for w in mine):
        return cell(PASS, f"{expected}: {_listed([w.text(dtype=False) for w in mine])}{note}", details)
    if all(w.dtype in tflite.FLOAT_DTYPES and w.dtype != expected for w in mine):
        return cell(WARN, f"not quantized by this recipe: {texts} (the recipe stores {expected}){note}", details)
    if not any(w.dtype == expected for w in mine):
        return cell(WARN, f"not in the recipe's {expected}: {texts}{note}", details)
    return cell(WARN, f"partly {expected}: {texts}{note}", details)


# -- the convert stage --------------------------------------------------------------------------
def convert_stage(artifact: RecipeArtifact, spec: RecipeSpec, float_size: int) -> StageCell:
    if artifact.converted and artifact.path is not None:
        size = artifact.path.stat().st_size
        cached = ", from the cache" if artifact.from_cache else ""
        return cell(PASS, f"{spec.label} {spec.kind} file, {size} bytes ({size / float_size:.2f}x float){cached}",
                    ConvertDetails(size, round(size / float_size, 4), artifact.from_cache, artifact.seconds,
                                   str(artifact.path), artifact.quantizer_version))
    reason = artifact.error or "the quantizer gave no file"
    if artifact.quantizer_version is None:  # the extra is not installed
        return cell(SKIP, reason)
    kind = artifact.details.get("kind")
    if kind in ("crash", "timeout"):  # the child died or hung: not a refusal (and not cached)
        return cell(ERROR, f"the quantizer child {'hung' if kind == 'timeout' else 'died'}: {reason}",
                    ConvertDetails(kind=kind))
    return cell(FAIL, reason, ConvertDetails(kind=kind) if kind else None)


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


def float_agreement(out: np.ndarray, float_out: np.ndarray, float_tensor: TensorLike) -> FloatAgreement:
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

    def compare_with_float(self, float_out: np.ndarray | None, float_tensor: TensorLike) -> None:
        if self.outputs is None:
            return
        if float_out is None:
            self.agreement_note = "no float outputs to compare with"
        elif float_out.size != self.outputs.size:
            self.agreement_note = f"output has {self.outputs.size} values, the float model {float_out.size}"
            self.shape_mismatch = True
        else:
            self.agreement = float_agreement(self.outputs, float_out, float_tensor)


def _pair_text(other: str, pair: KernelPair) -> str:
    diff = "n/a" if pair.max_abs is None else f"{pair.max_abs:.3g}"
    return f"{other} ({(pair.agreement.rate or 0.0):.1%} top-1 agreement, max abs diff {diff})"


def device_stage(run: KernelRun, cross: CrossKernel, runs: dict[str, KernelRun]) -> StageCell:
    """One listed device's cell for one recipe: it ran, how it agrees with float and with the
    other kernels (judged as ``recipes.stage`` judges K1)."""
    agreement = run.agreement
    if run.outputs is None:
        assert run.error is not None  # a kernel run has outputs or the error that kept it from them
        return cell(device_error_verdict(run.error), f"{run.error.kind}: {run.error.reason}")
    verdicts, parts = [PASS], [f"ran {len(run.outputs)} inputs"]
    if np.isnan(run.outputs).any():
        verdicts.append(FAIL)
        parts.append("NaN in its outputs")
    if agreement is not None:
        parts.append(agreement.text())
        accurate = EightBitOnly.ACCURATE_AGREEMENT
        top1 = agreement.top1
        if top1.ci_high is not None and top1.ci_high < accurate:
            verdicts.append(WARN)
            parts[-1] += f" (interval {top1.ci_low or 0.0:.0%}-{top1.ci_high:.0%}, below {accurate:.0%})"
    elif run.agreement_note:
        verdicts.append(FAIL if run.shape_mismatch else SKIP)
        parts.append(run.agreement_note)
    kernels: dict[str, KernelPairDetails] = {}
    for pair in cross.pairs:
        if run.device not in (pair.a, pair.b):
            continue
        other = pair.b if pair.a == run.device else pair.a
        kernels[other] = KernelPairDetails(pair.agreement, pair.max_abs)
        clearly_apart = CrossKernelAgreement.apart(pair)
        if clearly_apart and other in cross.odd:
            parts.append(f"{other} is the further from float, not this one")
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
    details = RecipeDeviceDetails(kernels, agreement.top1 if agreement else None,
                                  agreement.difference if agreement else None, True if run.simulated else None)
    verdict = Verdict.worst(v for v in verdicts if v != SKIP)
    return cell(verdict, "; ".join(parts) + (" [SIMULATED device]" if run.simulated else ""), details)


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


def kernels_stage(claim: ClaimResult, cross: CrossKernel) -> StageCell:
    """``recipe:R:kernels``: K1 over every kernel that ran the recipe's file."""
    return cell(claim.verdict, claim.reason, KernelsDetails(claim.measured, cross.kernels, cross.odd, cross.failed))
