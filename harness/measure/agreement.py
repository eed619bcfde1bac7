"""What one device's outputs say about the file under test: how far each output is from LiteRT's
reference kernels, and from float on this device (class scores on top-1, every other output on
its fidelity in its own scale), and each variant's top-1 against the labels. Typed measurements
only; ``harness.judge`` turns them into claim results."""
from __future__ import annotations

import dataclasses

import numpy as np

from qat_harness import stats
from qat_harness.core import tflite
from qat_harness.measure.difference import OutputDifference, OutputTensor, output_difference
from qat_harness.measure.output_kinds import OutputKind, OutputRole, degenerate
from qat_harness.variants import Variant

Outputs = dict[str, list[np.ndarray]]     # variant -> every output, examples on the first axis


@dataclasses.dataclass(frozen=True)
class TopOne:
    """The file under test's top-1 against float's on class-score outputs (the worst output),
    and each variant's top-1 against the labels if there are any."""
    agreement: stats.Proportion | None                # None: no float reference
    ptq_agreement: stats.Proportion | None
    unit: str | None = None                          # 'output elements (class ids)' for ArgMax outputs
    accuracy: dict[str, stats.Proportion] | None = None         # variant -> top-1 against the labels
    paired: dict[str, stats.PairedDifference] | None = None     # variant -> difference to the baseline
    baseline: str | None = None
    degenerate: str | None = None                    # why float's answers say nothing on these inputs
    output: str | None = None                        # the class-score output judged


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """One non-class output of the file under test against float's, both as real values."""
    role: OutputRole
    difference: OutputDifference
    degenerate: str | None = None


def versus_reference(device_outputs: list[np.ndarray], oracle: list[np.ndarray],
                     info: tflite.ModelInfo) -> tuple[OutputDifference, ...]:
    """Every output of the file under test against the reference kernels', on the examples
    the oracle ran (a prefix of the evaluation set)."""
    return tuple(output_difference(o[: len(r)], r, info.tensor(t))
                 for o, r, t in zip(device_outputs, oracle, info.outputs))


def real_values(values: np.ndarray, tensor: tflite.TensorInfo) -> np.ndarray:
    """An output as real numbers: quantized outputs dequantized with their own scale."""
    if tensor.scales and np.issubdtype(values.dtype, np.integer):
        return tflite.dequantize(values, tensor.scales[0], tensor.zero_points[0] if tensor.zero_points else 0)
    return values.astype(np.float64)


def fidelity(outputs: Outputs, under_test: str, roles: list[OutputRole], info: tflite.ModelInfo,
             float_info: tflite.ModelInfo) -> list[Fidelity]:
    """Every regression and dense output of the file under test against float's."""
    found = []
    for role in roles:
        if role.kind not in (OutputKind.REGRESSION, OutputKind.DENSE):
            continue
        reference = real_values(outputs[Variant.FLOAT][role.index], float_info.tensor(float_info.outputs[role.index]))
        values = real_values(outputs[under_test][role.index], info.tensor(info.outputs[role.index]))
        found.append(Fidelity(role, output_difference(values, reference, OutputTensor(role.name)),
                              degenerate(reference, role.kind)))
    return found


def class_id_agreement(outputs: Outputs, under_test: str, roles: list[OutputRole]) -> TopOne:
    position = next(r.index for r in roles if r.kind is OutputKind.CLASS_IDS)
    a, b = outputs[under_test][position], outputs[Variant.FLOAT][position]
    return TopOne(stats.wilson_interval(int(np.sum(a == b)), a.size), None, unit="output elements (class ids)",
                  output=roles[position].name)


def top_one(outputs: Outputs, under_test: str, roles: list[OutputRole], labels: np.ndarray | None) -> TopOne | None:
    """Top-1 on the class-score outputs of every variant (float, the control arm if built, the
    file under test, PTQ) on the same examples. None: the model has no class-score output."""
    scored = [r for r in roles if r.kind is OutputKind.CLASS_SCORES]
    if not scored:
        return None
    per_output = [_top_one(outputs, under_test, r, labels if len(scored) == 1 else None) for r in scored]
    worst = min(per_output, key=lambda t: (t.agreement.rate if t.agreement and t.agreement.rate is not None else 2))
    return worst


def _top_one(outputs: Outputs, under_test: str, role: OutputRole, labels: np.ndarray | None) -> TopOne:
    top1 = {v: np.argmax(o[role.index].reshape(len(o[role.index]), -1), axis=-1) for v, o in outputs.items()}
    reference = top1.get(Variant.FLOAT)

    def agreement(v: str) -> stats.Proportion | None:
        if reference is None or v not in top1:
            return None
        return stats.wilson_interval(int(np.sum(top1[v] == reference)), len(reference))

    dull = None
    if reference is not None and len(reference) >= 2 and np.all(reference == reference[0]):
        dull = f"output '{role.name}': float answers class {int(reference[0])} for all {len(reference)} inputs"
    if labels is None:
        return TopOne(agreement(under_test), agreement(Variant.PTQ_INT8), degenerate=dull, output=role.name)
    arms = [v for v in (Variant.FLOAT, Variant.FLOAT_FT, under_test, Variant.PTQ_INT8) if v in top1]
    correct = {v: top1[v] == labels for v in arms}
    baseline = next((v for v in (Variant.FLOAT_FT, Variant.FLOAT) if v in correct), None)
    return TopOne(agreement(under_test), agreement(Variant.PTQ_INT8),
                  accuracy={str(v): stats.wilson_interval(int(np.sum(correct[v])), len(labels)) for v in arms},
                  paired=({str(v): stats.paired_accuracy_difference(correct[baseline], correct[v])
                           for v in arms if v != baseline} if baseline else None),
                  baseline=str(baseline) if baseline else None, degenerate=dull, output=role.name)
