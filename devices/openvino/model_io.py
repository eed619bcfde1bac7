"""What a .tflite model takes and gives, read from the flatbuffer itself (not from OpenVINO's
view of it), so that inputs are checked against the model and outputs come back in the
model's own dtype whatever OpenVINO hands back.

Runs in the OpenVINO worker; numpy and the flatbuffer reader only.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import cast

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
        # zero points are set with the scales (tflite._tensor)
        return cls(name=t.name, dtype=np.dtype(t.dtype), shape=tuple(int(d) for d in t.shape),
                   scale=float(cast(list, t.scales)[0]) if per_tensor else None,
                   zero_point=int(cast(list, t.zero_points)[0]) if per_tensor else None)


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """Every input and output of the .tflite, in the model's own order: the order the harness
    passes inputs in and expects outputs back (LiteRT's get_input_details order). OpenVINO's
    ports are matched to them by tensor name, never by position."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops_total: int


def read_model_io(model_path: str | Path) -> ModelIO:
    try:
        info = inspect_model(model_path)
    except InvalidModel as exc:
        raise DeviceError(str(exc), kind="failed") from None
    return ModelIO(inputs=tuple(TensorSpec.of(info.tensor(i)) for i in info.inputs),
                   outputs=tuple(TensorSpec.of(info.tensor(i)) for i in info.outputs),
                   ops_total=len(info.ops))


def examples(inputs: np.ndarray, spec: TensorSpec) -> list[np.ndarray]:
    """Split a batch (first axis = examples) into model-shaped single examples. The dtype must
    already be the model's: converting float to int8 here would silently skip quantization."""
    if inputs.dtype != spec.dtype:
        raise DeviceError(f"inputs are {inputs.dtype}, the model's input {spec.name!r} is {spec.dtype}",
                          kind="failed")
    if inputs.ndim == 0 or (len(inputs) and inputs[0].size != int(np.prod(spec.shape))):
        raise DeviceError(f"an input example has shape {list(inputs.shape[1:])}, the model's input "
                          f"{spec.name!r} takes {list(spec.shape)}", kind="failed")
    return [inputs[i:i + 1].reshape(spec.shape) for i in range(len(inputs))]


def example_feeds(arrays: list[np.ndarray], io: ModelIO) -> list[dict[str, np.ndarray]]:
    """One ``{input tensor name: array}`` per example, from one batch per model input (in the
    model's input order). A missing input or batches of different lengths are refused: an
    input left unset, or examples paired across inputs wrongly, would give wrong answers."""
    if len(arrays) != len(io.inputs):
        raise DeviceError(f"the model takes {len(io.inputs)} input(s), {len(arrays)} given", kind="failed")
    per_input = [examples(x, spec) for x, spec in zip(arrays, io.inputs)]
    lengths = [len(batch) for batch in per_input]
    if not lengths or min(lengths) == 0 or len(set(lengths)) > 1:
        raise DeviceError(f"no examples to run, or inputs of different lengths {lengths}", kind="failed")
    return [{spec.name: batch[i] for spec, batch in zip(io.inputs, per_input)} for i in range(lengths[0])]


def to_model_dtype(values: np.ndarray, spec: TensorSpec) -> tuple[np.ndarray, str | None]:
    """OpenVINO's output in the .tflite output's dtype, and a note when it had to be
    requantized (OpenVINO may compute a quantized model's last op in float)."""
    if values.dtype == spec.dtype:
        return values, None
    if np.issubdtype(values.dtype, np.floating) and spec.scale is not None:
        note = (f"OpenVINO returned {values.dtype}; requantized to {spec.dtype} with the .tflite "
                f"output scale {spec.scale:.6g} and zero point {spec.zero_point}")
        # a spec with a scale has its zero point (TensorSpec.of)
        return quantize_input(values, spec.scale, cast(int, spec.zero_point), spec.dtype.name), note
    raise DeviceError(f"OpenVINO returned {values.dtype} for the model's {spec.dtype} output "
                      f"{spec.name!r} and it has no scale to requantize with", kind="failed")
