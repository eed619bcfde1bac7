"""What each output of a model is, so that every verdict is computed on outputs it applies to:
top-1 on class scores only; every other output (a regression head, a box, a mask, a feature
map, a state) on its fidelity to float in its own scale. Read from the file's output shapes,
the op that writes each output, the user's ``--task`` and the labels."""
from __future__ import annotations

import dataclasses
import enum

import numpy as np

from qat_harness.core import tflite


class OutputKind(str, enum.Enum):
    CLASS_SCORES = "class scores"      # one score per class per input: judged on top-1
    CLASS_IDS = "class ids"            # integer ids (an ArgMax output): judged on equality
    REGRESSION = "regression"          # a few values per input (a box, landmarks, a score)
    DENSE = "dense"                    # a map per input (a mask, features, a detector's grid)

    def __str__(self) -> str:
        return self.value


class Task(str, enum.Enum):
    """What the user says the model does (``--task``); None: read it from the file and data."""
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    DENSE = "dense"


#: ops that end a classifier: their output is a distribution over classes
_CLASSIFIER_HEADS = {"SOFTMAX", "LOG_SOFTMAX"}
#: ops that pass a tensor on unchanged in meaning
_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "CAST"}


@dataclasses.dataclass(frozen=True)
class OutputRole:
    index: int            # position among the model's outputs
    name: str
    kind: OutputKind
    why: str              # what decided it, for the report


def label_classes(labels: np.ndarray | None) -> int | None:
    """How many classes the labels name (class ids 0..max), None without labels."""
    return int(np.max(labels)) + 1 if labels is not None and len(labels) else None


def classify_outputs(info: tflite.ModelInfo, task: Task | None = None,
                     label_classes: int | None = None) -> list[OutputRole]:
    """``label_classes``: how many classes the labels name (None: no labels)."""
    roles = []
    for position, tensor_index in enumerate(info.outputs):
        t = info.tensor(tensor_index)
        roles.append(OutputRole(position, t.name, *_kind(info, tensor_index, task, label_classes,
                                                         len(info.outputs))))
    return roles


def _kind(info: tflite.ModelInfo, index: int, task: Task | None, label_classes: int | None,
          n_outputs: int) -> tuple[OutputKind, str]:
    t = info.tensor(index)
    per_input = [int(d) for d in t.shape[1:]]
    if not t.is_float and not t.scales:
        return OutputKind.CLASS_IDS, f"{t.dtype} values without a scale"
    width = int(np.prod(per_input)) if per_input else 1
    if len([d for d in per_input if d > 1]) > 1:
        return OutputKind.DENSE, f"a {per_input} map per input"
    if task is Task.REGRESSION:
        return OutputKind.REGRESSION, "--task regression"
    if task is Task.DENSE:
        return OutputKind.DENSE, "--task dense"
    if width < 2:
        return OutputKind.REGRESSION, "one value per input"
    head = _head_op(info, index)
    if head in _CLASSIFIER_HEADS:
        return OutputKind.CLASS_SCORES, f"{width} values from {head}"
    if task is Task.CLASSIFICATION:
        return OutputKind.CLASS_SCORES, "--task classification"
    if label_classes is not None and n_outputs == 1 and label_classes <= width:
        return OutputKind.CLASS_SCORES, f"{width} values, labels of {label_classes} classes"
    return OutputKind.REGRESSION, (f"{width} values per input, no softmax and no labels: give --task "
                                   "classification if they are class scores")


def _head_op(info: tflite.ModelInfo, index: int) -> str | None:
    producers = info.producers()
    for _ in range(8):
        op_index = producers.get(index)
        if op_index is None:
            return None
        op = info.ops[op_index]
        if op.opcode not in _PASS_THROUGH:
            return op.opcode
        index = next((i for i in op.inputs if i >= 0), -1)
    return None


def degenerate(reference: np.ndarray, kind: OutputKind) -> str | None:
    """Why an output says nothing about the model on these inputs (None: it varies): every
    input gets the same answer, or the same values to within 1e-6 of their magnitude."""
    x = np.asarray(reference)
    if len(x) < 2:
        return None
    if kind is OutputKind.CLASS_SCORES:
        top1 = np.argmax(x.reshape(len(x), -1), axis=-1)
        return f"class {int(top1[0])} for all {len(x)} inputs" if np.all(top1 == top1[0]) else None
    flat = x.reshape(len(x), -1).astype(np.float64)
    spread = float(np.max(np.ptp(flat, axis=0))) if flat.size else 0.0
    magnitude = float(np.max(np.abs(flat))) if flat.size else 0.0
    if spread <= 1e-6 * max(magnitude, 1e-12) or magnitude == 0.0:
        return "zero for every input" if magnitude == 0.0 else "the same values for every input"
    return None
