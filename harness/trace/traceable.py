"""What of a model the trace can follow on the host, decided before anything is captured, and
the copy of the model it then follows; what it leaves out is said in one line each.

- A compiled Edge TPU subgraph (``edgetpu-custom-op``) runs only on an Edge TPU, and a custom op
  LiteRT's built-in and reference resolvers lack does not load at all: the trace follows the
  ops before the first such op (the model cut there) and skips it and every op after it.
- A stateful model's resource-variable ops (CALL_ONCE, VAR_HANDLE, READ_VARIABLE,
  ASSIGN_VARIABLE, and any op reading or writing a resource or variant tensor) hold no value to
  compare, and a resource tensor cannot be read back from LiteRT: they are taken out. The values
  they hand to the other ops (the state READ_VARIABLE reads) become inputs of a stateless copy,
  fed with what the reference kernels read on the same inputs, one example after another. The
  copy's ops are numbered from 0: the skip line says how they map to the file's.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qat_harness.core import tflite
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import ModelInputs, input_list
from qat_harness.trace import graph
from qat_harness.trace.capture import OPAQUE_DTYPES, tensor_values
from qat_harness.trace.extract import extract_ops

EDGETPU_OP = "CUSTOM:edgetpu-custom-op"
#: The custom ops LiteRT's built-in and reference resolvers register (tflite/kernels/register.cc,
#: register_ref.cc); any other custom op does not load on the host.
LITERT_CUSTOM_OPS = frozenset({"CUSTOM:TFLite_Detection_PostProcess", "CUSTOM:Mfcc", "CUSTOM:AudioSpectrogram"})


def readable(info: tflite.ModelInfo, t: int) -> bool:
    """Whether tensor ``t``'s value can be read back from LiteRT as an array."""
    return t >= 0 and info.tensor(t).dtype not in OPAQUE_DTYPES


def is_state_op(info: tflite.ModelInfo, op: tflite.OpInfo) -> bool:
    """An op with nothing to compare: no readable output, or it reads or writes a resource or
    variant tensor (the state plumbing of a stateful model)."""
    tensors = [t for t in [*op.inputs, *op.outputs] if t >= 0]
    return (not any(readable(info, t) for t in op.outputs)
            or any(info.tensor(t).dtype in OPAQUE_DTYPES for t in tensors))


def host_cannot_load(op: tflite.OpInfo) -> str | None:
    """Why the host's LiteRT cannot load ``op`` (None: it can)."""
    if op.opcode == EDGETPU_OP:
        return (f"{op.opcode.removeprefix('CUSTOM:')} (a compiled Edge TPU subgraph): runs only on an Edge TPU; "
                "trace its uncompiled .tflite instead")
    if op.opcode.startswith("CUSTOM:") and op.opcode not in LITERT_CUSTOM_OPS:
        return (f"custom op '{op.opcode.removeprefix('CUSTOM:')}', which LiteRT's built-in and reference "
                "kernels lack: it does not load on the host")
    return None


def _op_list(info: tflite.ModelInfo, indices: list[int]) -> str:
    return ", ".join(f"op {k} {info.ops[k].opcode}" for k in indices)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which ops of a model the trace follows."""
    kept: list[int]            # op indices followed, in order
    state_ops: list[int]       # resource-variable ops taken out
    stop: int | None           # the first op the host cannot load (it and every op after it are skipped)
    stop_reason: str | None
    fed: list[int]             # tensors the taken-out ops hand to kept ops: inputs of the copy

    @property
    def whole(self) -> bool:
        return self.stop is None and not self.state_ops


def plan(info: tflite.ModelInfo) -> Plan:
    stop, reason = None, None
    for op in info.ops:
        reason = host_cannot_load(op)
        if reason is not None:
            stop = op.index
            break
    prefix = info.ops[:stop] if stop is not None else info.ops
    state = [op.index for op in prefix if is_state_op(info, op)]
    kept = [op.index for op in prefix if op.index not in state]
    written_by_state = {t for k in state for t in info.ops[k].outputs if readable(info, t)}
    fed = sorted({t for k in kept for t in info.ops[k].inputs if t in written_by_state})
    return Plan(kept, state, stop, reason, fed)


def skip_lines(info: tflite.ModelInfo, p: Plan) -> list[str]:
    """One line per kind of skip."""
    lines = []
    if p.stop is not None:
        last = len(info.ops) - 1
        after = {0: "", 1: f"; op {last} after it is not traced"}.get(
            last - p.stop, f"; ops {p.stop + 1}-{last} after it are not traced")
        before = "" if p.kept else "; no op before it to trace: nothing traced"
        lines.append(f"op {p.stop} {info.ops[p.stop].opcode}: {p.stop_reason}{after}{before}")
    if p.state_ops:
        copy = (f"; the state they read is fed to the other ops from the reference kernels' run, in a stateless "
                f"copy whose op numbers are not the file's ({_numbering(p.kept)})" if p.kept else "")
        lines.append(f"{_op_list(info, p.state_ops)}: resource-variable ops (the model's state) hold no value "
                     f"to compare and are not traced{copy}")
    return lines


def _numbering(kept: list[int]) -> str:
    offsets = {k - i for i, k in enumerate(kept)}
    if len(offsets) == 1:
        return f"file op = traced op + {offsets.pop()}"
    return "traced op -> file op: " + ", ".join(f"{i}->{k}" for i, k in enumerate(kept))


# -- the copy the trace follows -------------------------------------------------------------------
@dataclasses.dataclass
class Traced:
    """What the trace follows: the int8 (or float) file under trace, its float twin, the inputs
    they take (float examples, in ``input_names`` order) and what was left out."""
    int8_path: Path | None          # None: nothing of the model can be traced on the host
    float_path: Path | None
    inputs: ModelInputs
    input_names: list[str] | None
    skipped: list[str]


def _names_in_data_order(info: tflite.ModelInfo, input_names: list[str] | None, n_inputs: int) -> list[int]:
    """The model's input tensors in the order of the data's arrays."""
    if input_names and n_inputs > 1:
        order = tflite.input_order(info, input_names)   # model input position -> data position
        by_data = [0] * n_inputs
        for position, j in enumerate(order):
            by_data[j] = info.inputs[position]
        return by_data
    return list(info.inputs)


def _prefix(path: Path, info: tflite.ModelInfo, p: Plan, dest: Path) -> Path:
    """The model cut before its first op the host cannot load (every op before it kept)."""
    if p.stop is None:
        return path
    return graph.cut_model(path, _frontier(info, list(range(p.stop))), dest)


def _frontier(info: tflite.ModelInfo, ops: list[int]) -> list[int]:
    """The readable tensors ``ops`` write that none of them reads: the outputs that keep every
    one of them in a model made of them."""
    read = {t for k in ops for t in info.ops[k].inputs}
    return [t for k in ops for t in info.ops[k].outputs if readable(info, t) and t not in read]


def _record(path: Path, info: tflite.ModelInfo, x: list[np.ndarray], names: list[str] | None, tensors: list[int],
            tmp: Path, timeout_s: float) -> dict[int, np.ndarray]:
    """``tensors``' values on the reference kernels (the builtin ones when those fail), one
    example after another: the state a stateful model reads."""
    xq = input_list(tflite.model_inputs(info, x if len(x) > 1 else x[0], names))
    try:
        return tensor_values(path, info.inputs, xq, "ref", tensors, tmp, "state", timeout_s)
    except DeviceError:
        return tensor_values(path, info.inputs, xq, "builtin", tensors, tmp, "state-b", timeout_s)


def _stateless(path: Path, info: tflite.ModelInfo, p: Plan, dest: Path) -> tuple[Path, list[int]]:
    """The kept ops as a model of their own; returns it and the original tensor of each input."""
    extracted = extract_ops(path, p.kept, dest, outputs=_frontier(info, p.kept))
    return extracted.path, extracted.inputs


def _example_shaped(value: np.ndarray, shape: list[int], n: int) -> np.ndarray:
    per_example = tuple(int(d) for d in shape[1:])
    return value.reshape((n, *per_example)) if value.size == n * graph.element_count(per_example) else value


def traceable(int8_path: Path, float_path: Path | None, x: ModelInputs, input_names: list[str] | None,
              work: Path, timeout_s: float = 600.0) -> Traced:
    """Decide what of ``int8_path`` (and of its float twin) the trace can follow, and write the
    copies it follows into ``work``. ``x``: float examples, one array per model input in
    ``input_names`` order."""
    work.mkdir(parents=True, exist_ok=True)
    info = tflite.inspect_model(int8_path)
    p = plan(info)
    lines = skip_lines(info, p)
    if not p.kept:
        return Traced(None, None, x, input_names, lines)
    traced, inputs, names = Path(int8_path), x, input_names
    fed_names: list[str] | None = None   # a stateless copy's inputs, by tensor name
    if p.state_ops:
        traced, inputs, fed_names = _stateless_inputs(int8_path, info, p, x, input_names, work, timeout_s)
        names = fed_names if len(fed_names) > 1 else None
    elif p.stop is not None:
        traced = _prefix(int8_path, info, p, work / "traced-prefix.tflite")
    twin: Path | None
    if float_path is not None and Path(float_path).resolve() == Path(int8_path).resolve():
        twin, twin_note = traced, ""   # a float model traced alone is its own float twin
    else:
        twin, twin_note = _twin(float_path, fed_names, work)
    return Traced(traced, twin, inputs, names, lines + ([twin_note] if twin_note else []))


def _stateless_inputs(int8_path: Path, info: tflite.ModelInfo, p: Plan, x: ModelInputs,
                      input_names: list[str] | None, work: Path,
                      timeout_s: float) -> tuple[Path, ModelInputs, list[str]]:
    """The stateless copy, its inputs (the model's and the recorded state, in the copy's order)
    and their tensor names (by which the float twin's copy is fed too)."""
    arrays = input_list(x)
    n = len(arrays[0])
    prefix = _prefix(int8_path, info, p, work / "traced-prefix.tflite")
    recorded = _record(prefix, info, arrays, input_names, p.fed, work, timeout_s) if p.fed else {}
    by_tensor = dict(zip(_names_in_data_order(info, input_names, len(arrays)), arrays))
    by_tensor.update({t: _example_shaped(recorded[t], list(info.tensor(t).shape), n) for t in p.fed})
    traced, feeds = _stateless(prefix, info, p, work / "traced.tflite")
    inputs = [np.asarray(by_tensor[t]) for t in feeds]
    names = [info.tensor(t).name for t in feeds]
    return traced, (inputs if len(inputs) > 1 else inputs[0]), names


def _twin(float_path: Path | None, state_names: list[str] | None, work: Path) -> tuple[Path | None, str]:
    """The float twin cut and made stateless the same way. A stateless copy's inputs are fed by
    tensor name (``state_names``): the float copy's must have the same names, else the trace goes
    without it and says so."""
    if float_path is None:
        return None, ""
    finfo = tflite.inspect_model(float_path)
    fp = plan(finfo)
    if fp.whole and state_names is None:
        return float_path, ""
    if not fp.kept:
        return None, "float model: nothing of it runs on the host: the quantization stage is not traced"
    prefix = _prefix(Path(float_path), finfo, fp, work / "float-prefix.tflite")
    if not fp.state_ops and state_names is None:
        return prefix, ""
    path, feeds = ((prefix, list(finfo.inputs)) if not fp.state_ops
                   else _stateless(prefix, finfo, fp, work / "float-traced.tflite"))
    given = sorted(finfo.tensor(t).name for t in feeds)
    if len(feeds) != len(state_names or feeds) or (len(feeds) > 1 and given != sorted(state_names or [])):
        return None, ("float model: its inputs after the same cut are not the int8 copy's "
                      f"({', '.join(given)}): the quantization stage is not traced")
    return path, ""
