"""Standalone models made of some ops of a .tflite: one op alone, several ops each alone (one file
per device run instead of one per op), or a run of connected ops; what the local error and the
minimal repro run.

Each op keeps its constant tensors (weights, biases, their quantization); its other inputs become
model inputs, fed with the values the reference kernels recorded for those tensors. With
``isolate`` every op reads only model inputs, even when another chosen op writes that tensor, so
that each op's output is what it alone makes of its recorded inputs. The tensors keep their names
(a bug report names the original model's tensors); the model keeps the original's operator codes
and drops its signatures and metadata (they name the old inputs and outputs).
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from qat_harness.trace import graph


@dataclasses.dataclass(frozen=True)
class Extracted:
    """A model written by ``extract_ops``, and which original tensors its inputs and outputs are."""
    path: Path
    ops: list[int]          # the original op indices, in order
    inputs: list[int]       # the original tensor fed to each model input, in input order
    outputs: list[int]      # the original tensor of each model output, in output order


def _calls_subgraphs(op) -> bool:
    """WHILE, IF, CALL_ONCE and the like run other subgraphs: they cannot be taken alone."""
    options = op.builtinOptions
    return options is not None and any(name.endswith("SubgraphIndex") or name.endswith("subgraphIndex")
                                       for name in vars(options))


def extract_ops(src: Path, ops: list[int], dest: Path, isolate: bool = False,
                outputs: list[int] | None = None) -> Extracted:
    """Write the ops ``ops`` of ``src``'s subgraph 0 as a model of their own into ``dest``.
    Outputs: ``outputs`` (original tensor indices written by those ops) or, by default, every
    output of the chosen ops that no other chosen op reads (with ``isolate``: every output).
    Raises ValueError for an op that cannot stand alone (it calls other subgraphs)."""
    s = graph.schema()

    buf = Path(src).read_bytes()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
    sg = model.subgraphs[0]
    chosen = sorted(set(ops))
    operators = [sg.operators[i] for i in chosen]
    for i, op in zip(chosen, operators):
        if _calls_subgraphs(op):
            raise ValueError(f"op {i} calls other subgraphs: it cannot be run alone")
    buffers = model.buffers or []

    def constant(t: int) -> bool:
        tensor = sg.tensors[t]
        b = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
        return b is not None and ((b.data is not None and len(b.data) > 0) or (b.offset or 0) > 1)

    written = {int(t) for op in operators for t in (op.outputs if op.outputs is not None else []) if t >= 0}
    new_tensors: list = []
    new_buffers = [s.BufferT()]     # buffer 0: the empty sentinel every activation points at
    index: dict[tuple[str, int], int] = {}
    model_inputs: list[int] = []

    def place(t: int, role: str) -> int:
        key = (role, t)
        if key not in index:
            tensor = copy.copy(sg.tensors[t])
            tensor.buffer = 0
            if role == "const":
                original = buffers[sg.tensors[t].buffer]
                kept = copy.copy(original)
                if (original.offset or 0) > 1:   # data stored after the flatbuffer
                    import numpy as np
                    kept.data = np.frombuffer(buf[original.offset:original.offset + original.size], np.uint8)
                kept.offset, kept.size = 0, 0
                new_buffers.append(kept)
                tensor.buffer = len(new_buffers) - 1
            index[key] = len(new_tensors)
            new_tensors.append(tensor)
            if role == "in":
                model_inputs.append(t)
        return index[key]

    new_ops = []
    for op in operators:
        op = copy.copy(op)
        ins = []
        for t in (op.inputs if op.inputs is not None else []):
            t = int(t)
            if t < 0:
                ins.append(t)
            elif constant(t):
                ins.append(place(t, "const"))
            elif sg.tensors[t].isVariable:
                ins.append(place(t, "var"))
            elif isolate or t not in written:
                ins.append(place(t, "in"))
            else:
                ins.append(place(t, "out"))
        op.inputs = ins
        outs = op.outputs if op.outputs is not None else []
        op.outputs = [place(int(t), "out") if t >= 0 else int(t) for t in outs]
        if op.intermediates is not None:
            op.intermediates = [place(int(t), "mid") for t in op.intermediates]
        new_ops.append(op)

    if outputs is None:
        read = set() if isolate else {int(t) for op in operators for t in (op.inputs if op.inputs is not None else [])}
        outputs = [t for op in operators for t in (op.outputs if op.outputs is not None else [])
                   if t >= 0 and t not in read]
    missing = [t for t in outputs if ("out", t) not in index]
    if missing:
        raise ValueError(f"tensor(s) {missing} are written by none of ops {chosen}")
    sg.tensors = new_tensors
    sg.operators = new_ops
    sg.inputs = [index[("in", t)] for t in model_inputs]
    sg.outputs = [index[("out", t)] for t in outputs]
    model.subgraphs = [sg]
    model.buffers = new_buffers
    model.signatureDefs = None
    model.metadata = None
    model.metadataBuffer = None
    dest = graph.write_model(model, dest, len(buf))
    return Extracted(dest, chosen, list(model_inputs), list(outputs))
