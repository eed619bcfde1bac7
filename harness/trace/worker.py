"""Child side of the per-layer trace: run a .tflite on a fixed set of inputs with every
intermediate tensor kept (``experimental_preserve_all_tensors=True``) and save the output
tensor of every op, one array per tensor, examples on the first axis.

Invoked as ``python -m qat_harness.trace.worker request.json response.json`` through
``core.child.run_child``. No TensorFlow import: only the LiteRT interpreter.

Request: ``model`` (.tflite path), ``inputs`` (.npz with ``in_0``, ``in_1``, ... one array per
model input, examples first, already in each input's dtype), ``out`` (.npz to write, keys
``t<tensor index>``), ``resolver``: ``ref`` (LiteRT's reference kernels, the oracle) or
``builtin`` (the optimized builtin kernels without the default XNNPACK delegate, which hides
intermediates), optional ``tensors`` (the tensor indices to keep; default every op output).
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np

from qat_harness.core.child import serve_once
from qat_harness.devices.base import load_inputs


@dataclasses.dataclass(frozen=True)
class TensorRequest:
    """What the parent asks (``capture.tensor_values``), as the JSON the child reads."""
    model: str
    inputs: str
    out: str
    resolver: str = "ref"
    tensors: list[int] | None = None


def _litert():
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # optional fallback
        from tflite_runtime import interpreter as litert  # type: ignore
    return litert


def make_interpreter(model_path: str, resolver: str):
    litert = _litert()
    kind = {"ref": litert.OpResolverType.BUILTIN_REF,
            "builtin": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[resolver]
    interp = litert.Interpreter(model_path=model_path, experimental_op_resolver_type=kind,
                                experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    return interp


def op_outputs(interp) -> list[int]:
    """Every tensor an op writes, in op order."""
    seen, out = set(), []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only way to list the graph
        for t in op["outputs"]:
            t = int(t)
            if t >= 0 and t not in seen:
                seen.add(t)
                out.append(t)
    return out


def trace(request: dict) -> dict:
    req = TensorRequest(**request)
    interp = make_interpreter(req.model, req.resolver)
    inputs = load_inputs(req.inputs)
    details = interp.get_input_details()
    if len(inputs) != len(details):
        raise ValueError(f"the model takes {len(details)} input(s), {len(inputs)} given")
    n = len(inputs[0])
    wanted = req.tensors or op_outputs(interp)
    rows: dict[int, list[np.ndarray]] = {int(t): [] for t in wanted}
    for i in range(n):
        for d, x in zip(details, inputs):
            if x.dtype != np.dtype(d["dtype"]):
                raise ValueError(f"input '{d['name']}' takes {np.dtype(d['dtype']).name}, got {x.dtype.name}")
            interp.set_tensor(d["index"], x[i:i + 1].reshape(d["shape"]))
        interp.invoke()
        for t in rows:
            rows[t].append(np.array(interp.get_tensor(t)))
    arrays = {}
    for t, values in rows.items():
        try:
            arrays[f"t{t}"] = np.stack(values)
        except ValueError:  # a tensor whose shape changes per example: keep the first
            arrays[f"t{t}"] = values[0][None]
    np.savez(req.out, **arrays)  # type: ignore[arg-type]  # numpy stub: **arrays read as allow_pickle
    return {"ok": True, "n": int(n), "tensors": sorted(rows)}


if __name__ == "__main__":
    sys.exit(serve_once(trace))
