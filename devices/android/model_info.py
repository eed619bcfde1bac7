"""What the NNAPI adapter needs to know about a .tflite before sending it to a phone: the
main subgraph's input and output tensors (name, shape, dtype) and its operators.

Read with the harness's flatbuffer reader (``qat_harness.core.tflite``: pure Python, no
interpreter, nothing executed), so a corrupt file is a one-line DeviceError and never a crash
of the harness.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qat_harness.devices.base import DeviceError


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def shape_flag(self) -> str:
        """The shape as benchmark_model's --input_layer_shape wants it: 1,8,8,1."""
        return ",".join(str(d) for d in self.shape)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    operators: tuple[str, ...]  # builtin op names of the main subgraph, in order

    @property
    def output_nbytes(self) -> int:
        return sum(t.nbytes for t in self.outputs)


def _operator_label(opcode: str) -> str:
    """Custom ops go by their own name in benchmark_model's profile, not 'CUSTOM:<name>'."""
    if opcode.startswith("CUSTOM:"):
        return opcode[len("CUSTOM:"):] or "CUSTOM"
    return opcode


def read_model_info(path: Path) -> ModelInfo:
    """The NNAPI view of a model, from the shared flatbuffer reader (``tflite_inspect``)."""
    from qat_harness.core import tflite as tflite_inspect

    try:
        buf = Path(path).read_bytes()
    except OSError as exc:
        raise DeviceError(f"cannot read {path}: {exc.strerror or exc}", kind="failed") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise DeviceError(f"{Path(path).name} is not a TFLite flatbuffer (no TFL3 identifier)", kind="failed")
    try:
        info = tflite_inspect.inspect_model(buf)
    except tflite_inspect.InvalidModel as exc:
        raise DeviceError(f"{Path(path).name}: unreadable TFLite flatbuffer ({exc})", kind="failed") from None

    def tensor(index: int) -> TensorInfo:
        t = info.tensor(index)
        try:
            dtype = np.dtype(t.dtype)
        except TypeError:
            raise DeviceError(f"{Path(path).name}: tensor {index} has a type benchmark_model cannot "
                              f"feed ({t.dtype})", kind="failed") from None
        return TensorInfo(t.name, tuple(int(d) for d in t.shape), dtype)

    return ModelInfo(tuple(tensor(i) for i in info.inputs), tuple(tensor(i) for i in info.outputs),
                     tuple(_operator_label(op.opcode) for op in info.ops))
