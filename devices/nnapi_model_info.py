"""What the NNAPI adapter needs to know about a .tflite before sending it to a phone: the
main subgraph's input and output tensors (name, shape, dtype) and its operators.

Read straight from the flatbuffer with LiteRT's generated schema module (pure Python, no
interpreter, nothing executed), so a corrupt file is a one-line DeviceError and never a crash
of the harness.
"""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np

from qat_harness.devices.base import DeviceError

# TensorType enum of the TFLite schema -> numpy dtype (the types benchmark_model can feed)
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
           7: np.int16, 9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}


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


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def read_model_info(path: Path) -> ModelInfo:
    schema = _schema()
    try:
        buf = Path(path).read_bytes()
    except OSError as exc:
        raise DeviceError(f"cannot read {path}: {exc.strerror or exc}", kind="failed") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise DeviceError(f"{Path(path).name} is not a TFLite flatbuffer (no TFL3 identifier)", kind="failed")
    try:
        model = schema.Model.GetRootAs(buf, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        sg = model.Subgraphs(0)
        names = _op_names(schema)
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            if code == schema.BuiltinOperator.CUSTOM:
                codes.append((oc.CustomCode() or b"CUSTOM").decode("utf-8", "replace"))
            else:
                codes.append(names.get(code, f"OP_{code}"))
        operators = tuple(codes[sg.Operators(i).OpcodeIndex()] for i in range(sg.OperatorsLength()))

        def tensor(index: int) -> TensorInfo:
            t = sg.Tensors(index)
            if t.Type() not in _DTYPES:
                raise ValueError(f"tensor {index} has a type benchmark_model cannot feed ({t.Type()})")
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            return TensorInfo((t.Name() or b"").decode("utf-8", "replace"), shape, np.dtype(_DTYPES[t.Type()]))

        inputs = tuple(tensor(int(i)) for i in sg.InputsAsNumpy())
        outputs = tuple(tensor(int(i)) for i in sg.OutputsAsNumpy())
    except (ValueError, IndexError, TypeError, AttributeError, struct.error) as exc:
        raise DeviceError(f"{Path(path).name}: unreadable TFLite flatbuffer ({exc})", kind="failed") from None
    return ModelInfo(inputs, outputs, operators)
