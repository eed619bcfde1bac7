"""Capture of every op's value on one fixed set of inputs, each in its own child: the int8 model
on LiteRT's reference kernels (the oracle; the builtin kernels stand in when those abort), the
float .tflite on the builtin kernels (the tensors matched to the int8 model's, ``graph.match_tensors``),
and the QAT Keras model's layer outputs (``keras_worker``), put on the ops whose output they are."""
from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qat_harness.core import tflite
from qat_harness.core.child import run_child
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import save_inputs
from qat_harness.trace import graph
from qat_harness.trace.keras_worker import LayerRequest, LayerResponse
from qat_harness.trace.results import REFERENCE_KERNELS
from qat_harness.trace.worker import TensorRequest

if TYPE_CHECKING:
    from qat_harness.build.artifacts import QatKerasModel

WORKER = "qat_harness.trace.worker"
KERAS_WORKER = "qat_harness.trace.keras_worker"
NO_KERAS_NOTE = ("no QAT Keras model (a .tflite given as it is, or a build that kept no QAT weights): "
                 "quantization and conversion are traced as one stage, int8 on the reference kernels vs float")
BUILTIN_STAND_IN = "LiteRT builtin kernels without delegates (the reference kernels failed)"

TensorValues = dict[int, np.ndarray]   # tensor index -> its value, examples first
#: Tensors LiteRT cannot hand back as arrays (reading one crashes the interpreter or gives an object).
OPAQUE_DTYPES = frozenset({"resource", "variant"})


def output_tensor(op: tflite.OpInfo) -> int:
    """The tensor an op's value is read from: its first output."""
    tensor = next((int(t) for t in op.outputs if t >= 0), None)
    if tensor is None:
        raise ValueError(f"op {op.index} ({op.opcode}) has no output tensor to trace")
    return tensor


def tensor_values(model: Path, input_tensors: list[int], inputs: list[np.ndarray], resolver: str,
                  tensors: list[int], tmp: Path, tag: str, timeout_s: float) -> TensorValues:
    """``tensors`` of ``model`` on ``resolver``'s kernels (``worker``), the inputs included."""
    in_path, out_path = tmp / f"{tag}-in.npz", tmp / f"{tag}-out.npz"
    save_inputs(in_path, inputs)
    request = TensorRequest(str(Path(model).resolve()), str(in_path), str(out_path), resolver, tensors)
    run_child(WORKER, dataclasses.asdict(request), timeout_s)
    with np.load(out_path, allow_pickle=False) as npz:
        values = {int(k[1:]): npz[k] for k in npz.files}
    for i, x in zip(input_tensors, inputs):
        values.setdefault(i, x)
    return values


# -- the QAT Keras model ------------------------------------------------------------------------
@dataclasses.dataclass
class KerasValues:
    """The QAT Keras model's values: per Keras layer name, and per model output."""
    by_layer: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    missing: list[str]
    output_layers: list[str]           # layers whose output is a model output


def keras_values(qat_keras: QatKerasModel, inputs: list[np.ndarray], layers: list[str], n_outputs: int,
                 tmp: Path, timeout_s: float) -> KerasValues:
    in_path, out_path = tmp / "keras-in.npz", tmp / "keras-out.npz"
    save_inputs(in_path, [np.asarray(x, dtype=np.float32) for x in inputs])
    request = LayerRequest(qat_keras.source, str(Path(qat_keras.weights).resolve()), str(in_path), str(out_path),
                           layers, n_outputs)
    answer = LayerResponse(**run_child(KERAS_WORKER, dataclasses.asdict(request), timeout_s, env=qat_keras.env))
    with np.load(out_path, allow_pickle=False) as npz:
        by_layer = {name: npz[key] for name, key in answer.found.items()}
        outputs = [npz[f"output_{j}"] for j in range(n_outputs) if f"output_{j}" in npz.files]
    return KerasValues(by_layer, outputs, answer.missing, answer.output_layers)


def keras_layers_wanted(info: tflite.ModelInfo) -> list[str]:
    names = []
    for op in info.ops:
        t = output_tensor(op)
        layer = graph.primary_layer(info.tensor(t).name)
        if t not in info.outputs and layer not in names:
            names.append(layer)
    return names


def keras_value_per_op(info: tflite.ModelInfo, values: KerasValues) -> dict[int, np.ndarray]:
    """op index -> the QAT Keras value of its output. A model output takes the model's output;
    a layer's value goes to the last op (in op order) that names it as its output layer and
    has as many elements (the ops before it compute parts of the layer); a layer whose output
    is a model output has no other op (its last part is the output op)."""
    out: dict[int, np.ndarray] = {}
    claimed: set[str] = set(values.output_layers)
    for op in reversed(info.ops):
        t = output_tensor(op)
        ti = info.tensor(t)
        if t in info.outputs and info.outputs.index(t) < len(values.outputs):
            value = values.outputs[info.outputs.index(t)]
        else:
            layer = graph.primary_layer(ti.name)
            found = values.by_layer.get(layer)
            if found is None or layer in claimed:
                continue
            if found[0].size != graph.element_count(ti.shape):  # a different part of the layer
                continue
            claimed.add(layer)
            value = found
        out[op.index] = value
    return out


# -- every stage's values, captured side by side ------------------------------------------------
@dataclasses.dataclass
class Captured:
    reference: TensorValues             # the int8 model's op outputs on the reference kernels
    reference_kernels: str              # which kernels those are
    float_values: TensorValues          # the float model's values of the matched tensors
    keras_per_op: dict[int, np.ndarray]  # op index -> the QAT Keras value of its output
    notes: list[str]


@dataclasses.dataclass
class FloatTwin:
    """The float .tflite, its tensors matched to the int8 model's, and its inputs."""
    path: Path
    info: tflite.ModelInfo
    matches: dict[int, int]             # int8 tensor -> float tensor of the same layer's value
    inputs: list[np.ndarray]


def capture(int8_path: Path, info: tflite.ModelInfo, xq: list[np.ndarray], x: list[np.ndarray],
            twin: FloatTwin | None, qat_keras: QatKerasModel | None, tmp: Path, timeout_s: float) -> Captured:
    """The three children run side by side; only the reference kernels' values are required."""
    notes: list[str] = []
    # a resource or variant tensor is never asked for: LiteRT cannot hand it back as an array
    op_tensors = [t for op in info.ops for t in op.outputs if t >= 0 and info.tensor(t).dtype not in OPAQUE_DTYPES]
    with ThreadPoolExecutor(max_workers=3) as pool:
        ref_job = pool.submit(tensor_values, int8_path, info.inputs, xq, "ref", op_tensors, tmp, "int8", timeout_s)
        flt_job: Future[TensorValues] | None = None
        keras_job: Future[KerasValues] | None = None
        if twin is not None:
            wanted = sorted({v for v in twin.matches.values()
                             if v not in twin.info.inputs and twin.info.tensor(v).dtype not in OPAQUE_DTYPES})
            flt_job = pool.submit(tensor_values, twin.path, twin.info.inputs, twin.inputs, "builtin", wanted, tmp,
                                  "float", timeout_s)
        if qat_keras is not None:
            keras_job = pool.submit(keras_values, qat_keras, x, keras_layers_wanted(info),
                                    len(info.outputs), tmp, timeout_s)
        try:
            ref = ref_job.result()
            reference = REFERENCE_KERNELS
        except DeviceError as exc:
            # LiteRT's reference kernels abort on some int8 graphs (an int8 SOFTMAX whose
            # output is not quantized as 1/256, -128): the builtin kernels stand in
            ref = tensor_values(int8_path, info.inputs, xq, "builtin", op_tensors, tmp, "int8b", timeout_s)
            reference = BUILTIN_STAND_IN
            notes.append(f"the reference kernels failed on this model ({exc.kind}: {exc.reason[:120]}); "
                         "the int8 values are LiteRT's builtin (optimized, non-delegated) kernels'")
        flt = flt_job.result() if flt_job else {}
        keras_per_op: dict[int, np.ndarray] = {}
        if keras_job is not None:
            try:
                keras_per_op = keras_value_per_op(info, keras_job.result())
                unmatched = [o.index for o in info.ops if o.index not in keras_per_op]
                if unmatched:
                    notes.append(f"{len(unmatched)} op(s) have no QAT Keras value (an op inside a layer, "
                                 f"or a layer with no single output): {unmatched[:20]}")
            except DeviceError as exc:
                notes.append(f"the QAT Keras model could not be rebuilt ({exc.kind}: {exc.reason[:160]}); "
                             "quantization and conversion are traced as one stage")
    if not keras_per_op and qat_keras is None:
        notes.append(NO_KERAS_NOTE)
    return Captured(ref, reference, flt, keras_per_op, notes)
