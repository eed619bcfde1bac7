"""Read a .tflite flatbuffer and answer the structural claims about it: full-integer (C4),
per-axis weight quantization (C5) and BatchNorm folding (M3).

Parses with the flatbuffer schema bindings that ship inside ai-edge-litert
(``ai_edge_litert/schema_py_generated.py``), loaded straight from the file so that neither
TensorFlow nor the LiteRT runtime library is loaded: inspecting a model stays cheap.

Only the main subgraph (index 0) is walked for ops; ``ModelInfo.n_subgraphs`` says whether
there are others (control-flow bodies), and ``full_integer_check`` says so in its reason.

Every way a file can be unreadable (missing, not a regular file, empty, not a flatbuffer with
the 'TFL3' identifier, truncated, corrupt offsets or lengths, an absurd input shape) ends as
``InvalidModel`` with one line.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.util
import math
import struct
from pathlib import Path
from typing import cast

from qat_harness.core.errors import UsageError
from qat_harness.core.files import regular_file

FILE_IDENTIFIER = b"TFL3"

# Weight-bearing ops: position of the weight among the inputs and the axis that holds the
# output channels in TFLite's weight layout (conv OHWI, depthwise 1HWO, FC [out, in]).
WEIGHT_OPS = {
    "CONV_2D": (1, 0),
    "DEPTHWISE_CONV_2D": (1, 3),
    "FULLY_CONNECTED": (1, 0),
    "TRANSPOSE_CONV": (1, 0),  # inputs are (output_shape, weights, activation[, bias])
}
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
DENSE_OPS = ("FULLY_CONNECTED",)
FLOAT_DTYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
INTEGER_OK_DTYPES = frozenset({"int8", "int32"})  # what C4 literally asks of every tensor
#: The most elements a model input may declare (2**24: a 2048x2048x3 image takes 12.6 M).
#: Inputs are allocated from the declared shape (synthetic data, the runtime's tensors), so an
#: absurd shape in the file is refused before anything is allocated.
MAX_INPUT_ELEMENTS = 1 << 24


class InvalidModel(Exception):
    """The bytes are not a readable .tflite model; the message is one line."""


# -- schema -----------------------------------------------------------------------------------
def schema_path() -> Path:
    """ai-edge-litert's generated schema file, located without importing the package (its
    ``__init__`` dlopens the whole LiteRT runtime)."""
    pkg = importlib.util.find_spec("ai_edge_litert")
    if pkg is None or not pkg.submodule_search_locations:
        raise RuntimeError("ai-edge-litert is not installed: it provides the .tflite schema")
    for folder in pkg.submodule_search_locations:
        path = Path(folder) / "schema_py_generated.py"
        if path.is_file():
            return path
    raise RuntimeError("ai-edge-litert has no schema_py_generated.py: unsupported version")


def load_schema(module_name: str):
    """A private copy of the schema module, loaded from ``schema_path()``."""
    spec = importlib.util.spec_from_file_location(module_name, schema_path())
    assert spec is not None and spec.loader is not None  # a .py file always has a source loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def _schema():
    """The schema module the reader uses: a private copy that reads through checks, whatever
    else this process has imported (ai_edge_litert's own copy reads unchecked)."""
    module = load_schema("qat_harness._tflite_schema")
    module.flatbuffers = _checked_flatbuffers()  # this private copy reads through checks
    return module


# -- verification -----------------------------------------------------------------------------
# The python flatbuffers reader has no verifier, and LiteRT refuses a file its C++ verifier
# rejects ("not a valid Flatbuffer buffer"). The private schema copy above reads through
# ``_CheckedTable``, which checks what that verifier checks on every access: tables and their
# vtables inside the file, offsets and vector/string extents in range, scalars aligned,
# strings terminated. ``_verify_everything`` then reads the whole model once (the object API
# unpacks every field), so no corner of the file goes unchecked.
def _checked_flatbuffers():
    import types

    import flatbuffers
    from flatbuffers import encode, table
    from flatbuffers import number_types as N

    u32, s32, u16 = N.UOffsetTFlags.packer_type, N.SOffsetTFlags.packer_type, N.VOffsetTFlags.packer_type

    def bad(what: str, at: int):
        raise InvalidModel(f"corrupt flatbuffer: {what} at byte {at}")

    class _CheckedTable(table.Table):
        __slots__ = ()

        def __init__(self, buf, pos):
            super().__init__(buf, pos)
            if len(buf):  # the generated code makes empty placeholder tables for unions
                self._verify()

        def _verify(self):
            n, pos = len(self.Bytes), self.Pos
            if pos < 0 or pos % 4 or pos + 4 > n:
                bad("table out of range or misaligned", pos)
            # what flatbuffers' C++ VerifyTableStart checks, no more (each field is checked
            # when it is read): a stricter reader would refuse models LiteRT loads
            vtable = pos - encode.Get(s32, self.Bytes, pos)
            if vtable < 0 or vtable % 2 or vtable + 2 > n:
                bad("vtable out of range", pos)
            vt_size = encode.Get(u16, self.Bytes, vtable)
            if vt_size % 2 or vtable + vt_size > n:
                bad("vtable size out of range", vtable)

        def _uoffset(self, at: int) -> int:
            if at < 0 or at % 4 or at + 4 > len(self.Bytes):
                bad("offset out of range or misaligned", at)
            target = at + encode.Get(u32, self.Bytes, at)
            if target + 4 > len(self.Bytes):
                bad("offset points past the end", at)
            return target

        def Get(self, flags, off):
            width = flags.bytewidth
            if off < 0 or off + width > len(self.Bytes) or off % width:
                bad("scalar out of range or misaligned", off)
            return super().Get(flags, off)

        def Indirect(self, off):
            return self._uoffset(off)

        def String(self, off):
            start = self._uoffset(off)
            length = encode.Get(u32, self.Bytes, start)
            end = start + 4 + length
            if start % 4 or end >= len(self.Bytes) or self.Bytes[end] != 0:
                bad("string out of range or unterminated", start)
            return bytes(self.Bytes[start + 4:end])

        def _vector(self, off, width: int = 1) -> tuple[int, int]:
            start = self._uoffset(off + self.Pos)
            length = encode.Get(u32, self.Bytes, start)
            if start % 4 or start + 4 + length * width > len(self.Bytes) or (width and (start + 4) % width):
                bad("vector out of range or misaligned", start)
            return start + 4, length

        # Vector/VectorLen check the length field only: each element is checked when it is
        # read (tables and strings through Indirect/String, numbers through GetVectorAsNumpy)
        def Vector(self, off):
            return self._vector(off, 0)[0]

        def VectorLen(self, off):
            return self._vector(off, 0)[1]

        def GetVectorAsNumpy(self, flags, off):
            start, length = self._vector(off, flags.bytewidth)
            return encode.GetVectorAsNumpy(N.to_numpy_type(flags), self.Bytes, length, start)

        def Union(self, t2, off):
            t2.Bytes = self.Bytes
            t2.Pos = self._uoffset(off + self.Pos)
            _CheckedTable._verify(t2)

    shim = types.SimpleNamespace(**{k: getattr(flatbuffers, k) for k in dir(flatbuffers)
                                    if not k.startswith("__")})
    shim.table = types.SimpleNamespace(Table=_CheckedTable)
    return shim


def _verify_everything(model) -> None:
    """Read every field of the model (through the checked reader), as LiteRT's verifier does."""
    _schema().ModelT.InitFromObj(model)


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@functools.lru_cache(maxsize=1)
def _tensor_type_names() -> dict[int, str]:
    return {code: name.lower() for code, name in _enum_names(_schema().TensorType).items()}


@functools.lru_cache(maxsize=1)
def _builtin_names() -> dict[int, str]:
    return _enum_names(_schema().BuiltinOperator)


# -- data model -------------------------------------------------------------------------------
@dataclasses.dataclass
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: list
    is_constant: bool  # has buffer data (inside the flatbuffer, after it, or in an external file)
    scales: list | None
    zero_points: list | None
    quantized_dimension: int | None
    data_bytes: int = 0  # size of the constant data, 0 for activations

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


@dataclasses.dataclass
class OpInfo:
    index: int
    opcode: str  # BuiltinOperator name, or 'CUSTOM:<custom_code>'
    inputs: list  # tensor indices; -1 marks an omitted optional input
    outputs: list


@dataclasses.dataclass
class ModelInfo:
    size_bytes: int
    ops: list
    tensors: list
    inputs: list
    outputs: list
    n_subgraphs: int

    def op_counts(self) -> dict:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.opcode] = counts.get(op.opcode, 0) + 1
        return dict(sorted(counts.items()))

    def tensor(self, i: int) -> TensorInfo:
        return self.tensors[i]

    def producers(self) -> dict:
        """tensor index -> index of the op that writes it."""
        return {t: op.index for op in self.ops for t in op.outputs if t >= 0}

    def consumers(self) -> dict:
        """tensor index -> indices of the ops that read it."""
        out: dict[int, list[int]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t >= 0:
                    out.setdefault(t, []).append(op.index)
        return out

    def _io(self, indices) -> list:
        rows = []
        for i in indices:
            t = self.tensors[i]
            rows.append({"index": i, "name": t.name, "dtype": t.dtype, "shape": t.shape,
                         "scale": t.scales[0] if t.scales else None,
                         "zero_point": t.zero_points[0] if t.zero_points else None})
        return rows

    def to_dict(self) -> dict:
        dtypes: dict[str, int] = {}
        for t in self.tensors:
            dtypes[t.dtype] = dtypes.get(t.dtype, 0) + 1
        return {
            "size_bytes": self.size_bytes,
            "constant_bytes": sum(t.data_bytes for t in self.tensors),
            "n_subgraphs": self.n_subgraphs,
            "n_ops": len(self.ops),
            "n_tensors": len(self.tensors),
            "op_counts": self.op_counts(),
            "tensor_dtypes": dict(sorted(dtypes.items())),
            "inputs": self._io(self.inputs),
            "outputs": self._io(self.outputs),
        }


# -- parsing ----------------------------------------------------------------------------------
def _read_source(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        try:
            if Path(source).exists():  # a FIFO would block the read forever
                regular_file(source, "model file")
            return Path(source).read_bytes()
        except UsageError as exc:
            raise InvalidModel(str(exc)) from None
        except OSError as exc:
            raise InvalidModel(f"cannot read {source}: {exc.strerror or exc}") from None
    raise InvalidModel(f"expected a path or bytes, got {type(source).__name__}")


def inspect_model(source) -> ModelInfo:
    """Parse a .tflite file (path) or its bytes. Raises InvalidModel on anything unreadable."""
    buf = _read_source(source)
    label = str(source) if isinstance(source, (str, Path)) else "model bytes"
    if len(buf) < 8:
        raise InvalidModel(f"{label}: {len(buf)} bytes is too short to be a .tflite model")
    if buf[4:8] != FILE_IDENTIFIER:
        raise InvalidModel(f"{label}: not a .tflite model (file identifier {bytes(buf[4:8])!r}, "
                           f"expected {FILE_IDENTIFIER!r})")
    try:
        return _parse(buf)
    except InvalidModel as exc:
        raise InvalidModel(f"{label}: {exc}") from None
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeError,
            MemoryError, RecursionError) as exc:
        # the python flatbuffers reader has no verifier: a corrupt or truncated file shows up
        # as an out-of-range read somewhere in the accessors
        kind = "out-of-range read" if isinstance(exc, (struct.error, IndexError)) else type(exc).__name__
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise InvalidModel(f"{label}: corrupt or truncated flatbuffer ({kind}: {detail})") from None


def _count(n: int, limit: int, what: str) -> int:
    """A vector length read from the file; bounded by the file size so a corrupt length
    fails fast instead of looping for billions of elements."""
    if n < 0 or n > limit:
        raise InvalidModel(f"corrupt flatbuffer: {what} claims {n} entries in a {limit * 4}-byte file")
    return n


def _parse(buf: bytes) -> ModelInfo:
    s = _schema()
    limit = len(buf) // 4
    model = s.Model.GetRootAs(buf, 0)

    n_sub = _count(model.SubgraphsLength(), limit, "subgraphs")
    if n_sub == 0:
        raise InvalidModel("the model has no subgraph")
    opcodes = [_opcode_name(model.OperatorCodes(i))
               for i in range(_count(model.OperatorCodesLength(), limit, "operator codes"))]
    buffer_bytes = _buffer_sizes(model, buf, limit)
    external = _external_sizes(model, limit)

    sg = model.Subgraphs(0)
    n_tensors = _count(sg.TensorsLength(), limit, "tensors")
    tensors = [_tensor(sg.Tensors(i), i, buffer_bytes, external, limit) for i in range(n_tensors)]

    def indices(arr, what):
        out = [int(v) for v in arr]
        for v in out:
            if v < -1 or v >= n_tensors:
                raise InvalidModel(f"corrupt flatbuffer: {what} refers to tensor {v} of {n_tensors}")
        return out

    ops = []
    for i in range(_count(sg.OperatorsLength(), limit, "operators")):
        op = sg.Operators(i)
        code = op.OpcodeIndex()
        if code >= len(opcodes):
            raise InvalidModel(f"corrupt flatbuffer: operator {i} uses opcode {code} of {len(opcodes)}")
        ops.append(OpInfo(i, opcodes[code], indices(_ints(op.InputsAsNumpy()), f"operator {i} inputs"),
                          indices(_ints(op.OutputsAsNumpy()), f"operator {i} outputs")))
    inputs = indices(_ints(sg.InputsAsNumpy()), "subgraph inputs")
    outputs = indices(_ints(sg.OutputsAsNumpy()), "subgraph outputs")
    for i in inputs:
        problem = input_shape_problem(tensors[i].shape) if i >= 0 else None
        if problem:
            raise InvalidModel(f"input '{tensors[i].name}' {problem}")
    _check_io_names(sg, inputs + outputs)
    _verify_everything(model)  # after the reads above, which name what they find wrong
    return ModelInfo(size_bytes=len(buf), ops=ops, tensors=tensors, inputs=inputs, outputs=outputs,
                     n_subgraphs=n_sub)


def input_shape_problem(shape) -> str | None:
    """What is wrong with a model input's declared shape, or None: a dimension below 1, or
    more than ``MAX_INPUT_ELEMENTS`` elements in all."""
    if any(d < 1 for d in shape):
        return f"declares the shape {list(shape)}: every dimension must be at least 1"
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        return (f"declares the shape {list(shape)}: {math.prod(shape)} elements, more than the "
                f"{MAX_INPUT_ELEMENTS} an input may take")
    return None


def _ints(arr) -> list:
    # the generated *AsNumpy accessors return 0 (not an array) when the field is absent
    return [] if isinstance(arr, int) else [int(v) for v in arr]


def _floats(arr) -> list:
    return [] if isinstance(arr, int) else [float(v) for v in arr]


def _text(raw) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


def _check_io_names(sg, indices: list) -> None:
    """LiteRT loads a model whose inner tensor names are not UTF-8, but its Python API cannot
    name such an input or output (and so cannot feed or read it)."""
    for i in indices:
        raw = sg.Tensors(i).Name() if i >= 0 else None
        try:
            raw and raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidModel(f"corrupt flatbuffer: the name of input/output tensor {i} is not "
                               f"UTF-8 text ({cast(bytes, raw)[:24]!r})") from None


def _opcode_name(oc) -> str:
    # builtin codes >= 127 live only in `builtin_code`; older files only fill the int8
    # `deprecated_builtin_code`, so the real code is the larger of the two
    code = max(int(oc.DeprecatedBuiltinCode()), int(oc.BuiltinCode()))
    name = _builtin_names().get(code)
    if name is None:  # LiteRT refuses it too ("builtin_code out of range")
        raise InvalidModel(f"operator code {code} is not a TFLite builtin operator")
    if name == "CUSTOM":
        return f"CUSTOM:{_text(oc.CustomCode())}"
    return name


def _buffer_sizes(model, buf: bytes, limit: int) -> list:
    """Bytes of constant data per buffer. Models over 2 GB keep the data after the
    flatbuffer and point at it with offset/size (offset > 1 means 'outside')."""
    sizes = []
    for i in range(_count(model.BuffersLength(), limit, "buffers")):
        b = model.Buffers(i)
        offset, size = int(b.Offset()), int(b.Size())
        if offset > 1:
            if offset + size > len(buf):
                raise InvalidModel(f"buffer {i} points past the end of the file "
                                   f"({offset + size} > {len(buf)} bytes): truncated model?")
            sizes.append(size)
            continue
        n = int(b.DataLength())
        if n:
            try:  # a zero-copy view; refused if it would run past the end
                b.DataAsNumpy()
            except (ValueError, InvalidModel):
                raise InvalidModel(f"buffer {i} claims {n} bytes and runs past the end of the "
                                   "file: truncated or corrupt model") from None
        sizes.append(n)
    return sizes


def _external_sizes(model, limit: int) -> dict:
    """External buffers (data in a separate file group): id -> length."""
    out: dict[int, int] = {}
    try:
        n = model.ExternalBuffersLength()
    except AttributeError:  # older schema bindings
        return out
    for i in range(_count(n, limit, "external buffers")):
        e = model.ExternalBuffers(i)
        out[int(e.Id())] = int(e.Length())
    return out


def _tensor(t, index: int, buffer_bytes: list, external: dict, limit: int) -> TensorInfo:
    type_code = int(t.Type())
    dtype = _tensor_type_names().get(type_code)
    if dtype is None:  # LiteRT refuses it too ("Unsupported data type")
        raise InvalidModel(f"tensor {index} has the unknown data type {type_code}")
    shape = _ints(t.ShapeAsNumpy())
    buffer_index = int(t.Buffer())
    if buffer_index >= len(buffer_bytes) and buffer_index != 0:
        raise InvalidModel(f"corrupt flatbuffer: tensor {index} uses buffer {buffer_index} "
                           f"of {len(buffer_bytes)}")
    data = buffer_bytes[buffer_index] if buffer_index < len(buffer_bytes) else 0
    ext_id = int(getattr(t, "ExternalBuffer", lambda: 0)())
    if ext_id:
        data = external.get(ext_id, 0) or 1  # data elsewhere; size unknown when not listed
    is_constant = data > 0 and not t.IsVariable()

    scales = zero_points = qdim = None
    q = t.Quantization()
    if q is not None:
        _count(q.ScaleLength(), limit, f"tensor {index} scales")
        sc, zp = _floats(q.ScaleAsNumpy()), _ints(q.ZeroPointAsNumpy())
        if sc:
            scales, zero_points, qdim = sc, zp or [0] * len(sc), int(q.QuantizedDimension())
    return TensorInfo(index=index, name=_text(t.Name()), dtype=dtype, shape=shape,
                      is_constant=is_constant, scales=scales, zero_points=zero_points,
                      quantized_dimension=qdim, data_bytes=data if is_constant else 0)


# -- report helper ----------------------------------------------------------------------------
def describe_quantization(info: ModelInfo) -> list:
    """One row per quantized tensor: dtype, shape, how many scales and their range."""
    rows = []
    for t in info.tensors:
        if not t.scales:
            continue
        rows.append({"index": t.index, "name": t.name, "dtype": t.dtype, "shape": t.shape,
                     "constant": t.is_constant, "n_scales": len(t.scales),
                     "scale_min": min(t.scales), "scale_max": max(t.scales),
                     "zero_point": t.zero_points[0] if len(set(t.zero_points)) == 1 else None,
                     "quantized_dimension": t.quantized_dimension if len(t.scales) > 1 else None})
    return rows


# -- quantized tensors ------------------------------------------------------------------------
def _unclipped(x, scale: float, zero_point: int):
    """Float values -> the integers a quantized tensor would hold, before clipping (float64)."""
    import numpy as np

    return np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point


def quantize_input(x, scale: float, zero_point: int, dtype: str = "int8"):
    """Float values -> the integer tensor a quantized model expects (round, shift, clip)."""
    import numpy as np

    info = np.iinfo(np.dtype(dtype))
    return np.clip(_unclipped(x, scale, zero_point), info.min, info.max).astype(dtype)


def dequantize(q, scale: float, zero_point: int):
    import numpy as np

    return (np.asarray(q).astype(np.float32) - zero_point) * scale


QUANTIZED_INPUT_DTYPES = ("int8", "uint8", "int16")
#: A value whose quantized integer lies within this many steps beyond the dtype's range is
#: rounding at the end of a range, not saturation: [-1, 1] into 256 levels of 1/128 ends one
#: step short of 1.0, so the brightest pixel of every image lands one step past the top.
CLIP_SLACK_STEPS = 1
#: Elements quantized at a time when counting clipped values (bounds the float64 copy).
_CLIP_CHUNK = 1 << 20


class InputMismatch(ValueError):
    """The data does not fit what a model input takes; the message is one line."""


def is_native(dtype: str, quantized: bool, data_dtype) -> bool:
    """Data of ``data_dtype`` is already in a quantized input's own format: integers of the
    input's dtype, which the model takes as they are (re-quantizing them as if they were real
    values saturates: uint8 pixels 0..255 read as reals are all beyond a [-1, 1] input)."""
    import numpy as np

    return quantized and dtype in QUANTIZED_INPUT_DTYPES and np.dtype(data_dtype) == np.dtype(dtype)


def tensor_input(t: TensorInfo, x):
    """Examples -> what one input tensor takes: integers of a quantized input's own dtype as
    they are (its native format); other values quantized with the tensor's own scale and zero
    point for int8 / uint8 / int16; float32 for float inputs; integer ids as they are for an
    integer input without quantization. Anything else is an error, never a silent cast that
    would feed the model wrong values."""
    import numpy as np

    x = np.asarray(x)
    if is_native(t.dtype, bool(t.scales), x.dtype):
        return x
    if t.dtype in QUANTIZED_INPUT_DTYPES and t.scales:
        return quantize_input(x, t.scales[0], cast(list, t.zero_points)[0], t.dtype)  # set with scales
    if t.dtype in ("float32", "float16"):
        return x.astype(t.dtype)
    if t.dtype.startswith(("int", "uint")):
        if not np.issubdtype(x.dtype, np.integer):
            raise InputMismatch(f"input '{t.name}' takes {t.dtype} values without quantization "
                                f"(ids), but the data is {x.dtype.name}")
        return x.astype(t.dtype)
    raise InputMismatch(f"input '{t.name}' takes {t.dtype}, which the harness cannot feed")


class FeedScheme(str, enum.Enum):
    """How a user's data reaches one model input."""
    NATIVE = "native"          # integers of the quantized input's own dtype, fed as they are
    QUANTIZED = "quantized"    # values quantized with the input's scale and zero point
    FLOAT = "float"            # values as given, into a float input
    IDS = "ids"                # integer ids, as given, into an integer input without quantization


@dataclasses.dataclass(frozen=True)
class InputFeed:
    """What one model input was fed: the data's dtype and value range as given, the scheme
    that made the tensor of it, and the fraction of values quantization clipped (more than
    ``CLIP_SLACK_STEPS`` steps beyond what the input represents)."""
    input: str
    dtype: str                      # of the data as given
    low: float
    high: float
    scheme: FeedScheme
    tensor_dtype: str
    scale: float | None = None      # the input's quantization, when it has one
    zero_point: int | None = None
    clipped: float = 0.0

    @property
    def represents(self) -> tuple[float, float] | None:
        """The real values the quantized input can take, or None."""
        if self.scale is None or self.zero_point is None:
            return None
        return represented_range(self.tensor_dtype, self.scale, self.zero_point)

    @property
    def scheme_text(self) -> str:
        if self.scheme is FeedScheme.NATIVE:
            return f"native {self.tensor_dtype}, fed as given"
        if self.scheme is FeedScheme.QUANTIZED:
            return f"quantized to {self.tensor_dtype} (scale {self.scale:.6g}, zero point {self.zero_point})"
        if self.scheme is FeedScheme.IDS:
            return f"integer ids into {self.tensor_dtype}"
        return f"as given into {self.tensor_dtype}"

    def describe(self) -> str:
        clipped = f", {self.clipped:.2%} clipped" if self.scheme is FeedScheme.QUANTIZED else ""
        return f"input '{self.input}': {self.dtype} {self.low:.4g}..{self.high:.4g}, {self.scheme_text}{clipped}"


def input_feed(name: str, dtype: str, scale: float | None, zero_point: int | None, arrays) -> InputFeed:
    """How ``arrays`` (every example meant for one input, in one or more arrays) are fed to an
    input of ``dtype`` quantized with ``scale`` and ``zero_point`` (None: not quantized), and
    the fraction of their values that quantization clips. Scheme as ``tensor_input`` feeds."""
    import numpy as np

    arrays = [np.asarray(a) for a in arrays]
    size = sum(a.size for a in arrays)
    given = np.result_type(*arrays) if arrays else np.dtype("float32")
    low = float(min(a.min() for a in arrays if a.size)) if size else 0.0
    high = float(max(a.max() for a in arrays if a.size)) if size else 0.0
    quantized = dtype in QUANTIZED_INPUT_DTYPES and scale is not None
    if arrays and all(is_native(dtype, quantized, a.dtype) for a in arrays):
        return InputFeed(name, given.name, low, high, FeedScheme.NATIVE, dtype, scale, zero_point)
    if quantized:
        assert scale is not None and zero_point is not None
        return InputFeed(name, given.name, low, high, FeedScheme.QUANTIZED, dtype, scale, zero_point,
                         _clipped(arrays, scale, zero_point, dtype) / size if size else 0.0)
    scheme = FeedScheme.FLOAT if dtype in FLOAT_DTYPES else FeedScheme.IDS
    return InputFeed(name, given.name, low, high, scheme, dtype)


def _clipped(arrays, scale: float, zero_point: int, dtype: str) -> int:
    """How many values quantize to more than ``CLIP_SLACK_STEPS`` beyond ``dtype``'s range."""
    import numpy as np

    info = np.iinfo(np.dtype(dtype))
    count = 0
    for array in arrays:
        flat = array.reshape(-1)
        for start in range(0, flat.size, _CLIP_CHUNK):
            q = _unclipped(flat[start:start + _CLIP_CHUNK], scale, zero_point)
            count += int(np.count_nonzero((q < info.min - CLIP_SLACK_STEPS) | (q > info.max + CLIP_SLACK_STEPS)))
    return count


def model_inputs(info: ModelInfo, x, names: list[str] | None = None):
    """Examples for every input of the model: ``x`` is one array (a single-input model) or one
    per input; returns the same shape of value, in the .tflite's input order. ``names`` gives
    the inputs' names in the order of ``x`` (a Keras model's declared order): the converter
    orders a .tflite's inputs by name, so they are matched by name, not position."""
    arrays = x if isinstance(x, list) else [x]
    if len(arrays) != len(info.inputs):
        raise InputMismatch(f"the model takes {len(info.inputs)} input(s), the data has {len(arrays)}")
    if names and len(arrays) > 1:
        arrays = [arrays[j] for j in input_order(info, names)]
    converted = [tensor_input(info.tensor(i), a) for i, a in zip(info.inputs, arrays)]
    return converted if isinstance(x, list) else converted[0]


def input_order(info: ModelInfo, names: list[str]) -> list[int]:
    """For each input tensor of the .tflite, the index in ``names`` of the input it is: by its
    serving-signature tensor name (``serving_default_<name>:0``), else by position."""
    order = []
    for i in info.inputs:
        tensor = info.tensor(i).name
        hits = [j for j, n in enumerate(names) if tensor in (f"serving_default_{n}:0", n)]
        if len(hits) != 1:
            return list(range(len(names)))
        order.append(hits[0])
    return order if sorted(order) == list(range(len(names))) else list(range(len(names)))


def represented_range(dtype: str, scale: float, zero_point: int) -> tuple[float, float]:
    """The real values an integer ``dtype`` quantized with ``scale`` and ``zero_point`` holds."""
    import numpy as np

    info = np.iinfo(np.dtype(dtype))
    return scale * (info.min - zero_point), scale * (info.max - zero_point)
