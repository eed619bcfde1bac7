"""What a .tflite model takes and gives, read from the flatbuffer itself (not from OpenVINO's
view of it), so that inputs are checked against the model and outputs come back in the
model's own dtype whatever OpenVINO hands back.

Runs in the OpenVINO worker; numpy and the flatbuffer reader only.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qat_harness.core.errors import DeviceError
from qat_harness.core.tflite import InvalidModel, TensorInfo, inspect_model, quantize_input


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]      # the static shape, batch 1 as the model says
    scale: float | None         # per-tensor quantization, None for float tensors
    zero_point: int | None

    @classmethod
    def of(cls, t: TensorInfo) -> TensorSpec:
        per_tensor = t.scales is not None and len(t.scales) == 1
        return cls(name=t.name, dtype=np.dtype(t.dtype), shape=tuple(int(d) for d in t.shape),
                   scale=float(t.scales[0]) if per_tensor else None,
                   zero_point=int(t.zero_points[0]) if per_tensor else None)


@dataclasses.dataclass(frozen=True)
class ModelIO:
    input: TensorSpec
    output: TensorSpec
    ops_total: int


def read_model_io(model_path: str | Path) -> ModelIO:
    """The single input and output of a .tflite model. A model with several inputs or outputs
    is refused: the harness passes one input array and compares one output array, and feeding
    or returning only the first would compare the wrong tensors without saying so."""
    try:
        info = inspect_model(model_path)
    except InvalidModel as exc:
        raise DeviceError(str(exc), kind="failed") from None
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise DeviceError(f"the model has {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
                          "the openvino device runs single-input, single-output models only",
                          kind="unsupported")
    return ModelIO(input=TensorSpec.of(info.tensor(info.inputs[0])),
                   output=TensorSpec.of(info.tensor(info.outputs[0])), ops_total=len(info.ops))


def examples(inputs: np.ndarray, spec: TensorSpec) -> list[np.ndarray]:
    """Split a batch (first axis = examples) into model-shaped single examples. The dtype must
    already be the model's: converting float to int8 here would silently skip quantization."""
    if inputs.dtype != spec.dtype:
        raise DeviceError(f"inputs are {inputs.dtype}, the model's input {spec.name!r} is {spec.dtype}",
                          kind="failed")
    if inputs.ndim == 0 or (len(inputs) and inputs[0].size != int(np.prod(spec.shape))):
        raise DeviceError(f"an input example has shape {list(inputs.shape[1:])}, the model takes "
                          f"{list(spec.shape)}", kind="failed")
    return [inputs[i:i + 1].reshape(spec.shape) for i in range(len(inputs))]


def to_model_dtype(values: np.ndarray, spec: TensorSpec) -> tuple[np.ndarray, str | None]:
    """OpenVINO's output in the .tflite output's dtype, and a note when it had to be
    requantized (OpenVINO may compute a quantized model's last op in float)."""
    if values.dtype == spec.dtype:
        return values, None
    if np.issubdtype(values.dtype, np.floating) and spec.scale is not None:
        note = (f"OpenVINO returned {values.dtype}; requantized to {spec.dtype} with the .tflite "
                f"output scale {spec.scale:.6g} and zero point {spec.zero_point}")
        return quantize_input(values, spec.scale, spec.zero_point, spec.dtype.name), note
    raise DeviceError(f"OpenVINO returned {values.dtype} for the model's {spec.dtype} output "
                      f"{spec.name!r} and it has no scale to requantize with", kind="failed")
