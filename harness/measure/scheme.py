"""Which quantization scheme a .tflite file uses, read from the file itself (never from the
name of the recipe or the variant that made it).

The scheme is decided by the *computing* ops: every op but the conversions (QUANTIZE,
DEQUANTIZE, CAST, DENSIFY) computes in the dtype of its non-constant tensors. Conversions at
the edges are the file's interface, not its arithmetic, so:

- an int8 body behind a float interface (the converter's default: a QUANTIZE after each float
  input, a DEQUANTIZE before each float output) is ``INT8``, like one with int8 io; C4 judges
  the interface on its own (it asks for integer io);
- an int8 body behind uint8 io (``inference_input_type=tf.uint8``) and the legacy TF1 model that
  computes in uint8 throughout are both ``UINT8``;
- a float model that CASTs a uint8 image input to float is float.

Weights are the constants, and the constants behind a DEQUANTIZE or a DENSIFY (float16 and
weight-only int4 weights are stored that way, sparse weights behind DENSIFY).
"""
from __future__ import annotations

import enum

from qat_harness.core.tflite import FLOAT_DTYPES, ModelInfo

#: Ops that change a tensor's type or layout without computing anything of the model.
CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "CAST", "DENSIFY"})
#: Integer dtypes that carry quantized values (int32/int64 hold biases, shapes, indices, ids).
_QUANTIZED_INT = ("int4", "int8", "uint8", "int16")


class QuantScheme(str, enum.Enum):
    FLOAT32 = "float32"              # float weights and float ops
    FP16_WEIGHTS = "fp16_weights"    # float16 weights dequantized to float32 before float ops
    SPARSE = "sparse"                # float, with sparse weights densified (DENSIFY) at run time
    DYNAMIC_RANGE = "dynamic_range"  # int8 weights, float activations (quantized on the fly)
    INT4_WEIGHTS = "int4_weights"    # int4 weights (weight-only, dynamic or with integer activations)
    INT8 = "int8"                    # full integer: int8 activations and weights
    UINT8 = "uint8"                  # full integer with uint8 io, or the legacy uint8 per-tensor scheme
    INT16X8 = "int16x8"              # full integer: int16 activations, int8 weights
    MIXED = "mixed"                  # integer ops and float ops in one graph (a float fallback)

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """How people read it in reports."""
        return _LABELS[self]

    @property
    def is_float(self) -> bool:
        """Does the file compute in float with no integer weights (nothing 8-bit to judge)?"""
        return self in (QuantScheme.FLOAT32, QuantScheme.FP16_WEIGHTS, QuantScheme.SPARSE)

    @property
    def file_phrase(self) -> str:
        """'a float32 file', 'an fp16-weights file': the subject of a reason."""
        article = "an" if self.label.startswith(("fp", "int")) else "a"
        return f"{article} {self.label} file"


_LABELS = {QuantScheme.FLOAT32: "float32", QuantScheme.FP16_WEIGHTS: "fp16-weights",
           QuantScheme.SPARSE: "sparse float", QuantScheme.DYNAMIC_RANGE: "dynamic-range",
           QuantScheme.INT4_WEIGHTS: "int4-weights", QuantScheme.INT8: "int8", QuantScheme.UINT8: "uint8",
           QuantScheme.INT16X8: "16x8", QuantScheme.MIXED: "mixed"}


def _kind(dtype: str) -> str | None:
    """'float', a quantized integer dtype, or None for the dtypes that carry no activation
    values (int32/int64 indices and shapes, bool, string)."""
    if dtype in FLOAT_DTYPES:
        return "float"
    return dtype if dtype in _QUANTIZED_INT else None


def _computing_kinds(info: ModelInfo) -> set[str]:
    kinds: set[str] = set()
    for op in info.ops:
        if op.opcode in CONVERSION_OPS:
            continue
        for t in op.inputs + op.outputs:
            if t >= 0 and not info.tensors[t].is_constant:
                kind = _kind(info.tensors[t].dtype)
                if kind is not None:
                    kinds.add(kind)
    return kinds


def _weight_dtypes(info: ModelInfo) -> set[str]:
    """The dtypes of the stored constants that hold weights (not int32/int64 biases or shapes)."""
    return {t.dtype for t in info.tensors if t.is_constant and t.dtype not in ("float32", "int32", "int64")
            and _kind(t.dtype) is not None}


def _densifies_weights(info: ModelInfo) -> bool:
    return any(op.opcode == "DENSIFY" and op.inputs and op.inputs[0] >= 0 and info.tensors[op.inputs[0]].is_constant
               for op in info.ops)


def quantization_scheme(info: ModelInfo) -> QuantScheme:
    """The scheme of a parsed .tflite (the main subgraph), from its tensors and ops."""
    kinds = _computing_kinds(info)
    if not kinds:  # nothing but conversions and index arithmetic: the interface says it
        kinds = {k for k in (_kind(info.tensors[i].dtype) for i in info.inputs + info.outputs) if k}
    integer = kinds & {"int8", "uint8", "int16"}
    weights = _weight_dtypes(info)
    if "float" in kinds and integer:
        return QuantScheme.MIXED
    if not integer:
        if "int4" in weights:
            return QuantScheme.INT4_WEIGHTS
        if weights & {"int8", "uint8"}:
            return QuantScheme.DYNAMIC_RANGE
        if _densifies_weights(info):
            return QuantScheme.SPARSE
        return QuantScheme.FP16_WEIGHTS if "float16" in weights else QuantScheme.FLOAT32
    if "int4" in weights:
        return QuantScheme.INT4_WEIGHTS
    if "int16" in integer:
        return QuantScheme.INT16X8
    io = {info.tensors[i].dtype for i in info.inputs + info.outputs}
    return QuantScheme.UINT8 if "uint8" in integer | io else QuantScheme.INT8
