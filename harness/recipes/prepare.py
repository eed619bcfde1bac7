"""A user's float .tflite made into what ai-edge-quantizer can quantize, before a recipe is applied
(in the recipe worker's child process).

Two rewrites of the flatbuffer, each only when needed and each said in the recipe's details:

- a serving signature (``serving_default``) over the main subgraph's inputs and outputs, when the
  file has none (legacy converters write none): the quantizer calibrates static recipes through
  a signature runner, and refuses a file without one;
- float16 weights widened to float32: a converter's fp16-weights file stores each weight as a
  float16 constant read by a DEQUANTIZE op. The quantizer quantizes constants only, so on such a
  file every recipe quantizes nothing (a 1.00x file) and the static ones fail. The widened file
  computes exactly what the fp16 one does (the DEQUANTIZE is the same float16 -> float32 cast).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from qat_harness.core import tflite

SIGNATURE_KEY = "serving_default"


class NotPreparable(Exception):
    """The file cannot be rewritten here; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The float model as the quantizer gets it, and what was changed to get there."""
    model: bytes
    added_signature: bool = False
    widened_weights: int = 0           # float16 constants behind a DEQUANTIZE, now float32 constants

    @property
    def changes(self) -> list[str]:
        out = []
        if self.added_signature:
            out.append(f"added a serving signature '{SIGNATURE_KEY}' (the file had none)")
        if self.widened_weights:
            out.append(f"widened {self.widened_weights} float16 weight tensor(s) to float32 "
                       "(the quantizer quantizes float32 constants only)")
        return out


def prepare(model: bytes) -> Prepared:
    """``model`` (a float .tflite's bytes) with a signature and float32 weights; the same bytes
    when it has both already."""
    tflite.inspect_model(model)  # verifies every table before the unchecked object API reads it
    schema = tflite.load_schema("qat_harness._recipe_prepare_schema")
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    if any(getattr(b, "offset", 0) for b in m.buffers or []):
        raise NotPreparable("the model keeps its weights outside the flatbuffer (a >2 GB layout): "
                            "it is not rewritten here")
    widened = _widen_float16_weights(schema, m)
    added = not m.signatureDefs
    if added:
        m.signatureDefs = [_signature(schema, m.subgraphs[0])]
    if not widened and not added:
        return Prepared(model)
    import flatbuffers

    builder = flatbuffers.Builder(max(1024, len(model)))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return Prepared(bytes(builder.Output()), added, widened)


def _signature(schema, graph):
    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = SIGNATURE_KEY, 0
    sig.inputs = _tensor_maps(schema, graph, graph.inputs, "input")
    sig.outputs = _tensor_maps(schema, graph, graph.outputs, "output")
    return sig


def _tensor_maps(schema, graph, indices, kind: str) -> list:
    """One entry per tensor, named after it (a keyword a signature runner accepts), unique."""
    maps, used = [], set()
    for position, index in enumerate(indices):
        raw = graph.tensors[index].name
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        name = re.sub(r"\W+", "_", text.split(":")[0]).strip("_")
        if not name or name[0].isdigit() or name in used:
            name = f"{kind}_{position}"
        used.add(name)
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        maps.append(entry)
    return maps


def _widen_float16_weights(schema, m) -> int:
    """Every DEQUANTIZE of a float16 constant into float32 becomes that constant in float32."""
    dequantize = {i for i, code in enumerate(m.operatorCodes or [])
                  if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE}
    f32 = schema.TensorType.FLOAT32
    widened = 0
    for graph in m.subgraphs or []:
        kept = []
        for op in graph.operators or []:
            data = _float16_constant(schema, m, graph, op) if op.opcodeIndex in dequantize else None
            if data is None or graph.tensors[op.outputs[0]].type != f32:
                kept.append(op)
                continue
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(data.view("<f2").astype("<f4").tobytes(), dtype=np.uint8)
            m.buffers.append(buffer)
            graph.tensors[op.outputs[0]].buffer = len(m.buffers) - 1
            widened += 1
        graph.operators = kept
    if widened:
        _drop_unread_float16(schema, m)
    return widened


def _float16_constant(schema, m, graph, op) -> np.ndarray | None:
    """The bytes of the dense float16 constant an op reads first and only writes one tensor of."""
    if not len(op.inputs) or op.inputs[0] < 0 or len(op.outputs) != 1:
        return None
    source = graph.tensors[op.inputs[0]]
    data = m.buffers[source.buffer].data if source.buffer else None
    if source.type != schema.TensorType.FLOAT16 or source.sparsity is not None or data is None or not len(data):
        return None
    return np.asarray(data, np.uint8)


def _drop_unread_float16(schema, m) -> None:
    """The float16 tensors nothing reads any more leave the graph, and their data the file (the
    quantizer reads every tensor while it calibrates, and the quantized file would carry them)."""
    float16 = schema.TensorType.FLOAT16
    for g, graph in enumerate(m.subgraphs):
        used = {i for op in graph.operators or [] for i in [*op.inputs, *op.outputs, *_listed(op.intermediates)]}
        used |= {*_listed(graph.inputs), *_listed(graph.outputs)}
        keep = [i for i, t in enumerate(graph.tensors or []) if i in used or t.type != float16]
        if len(keep) == len(graph.tensors):
            continue
        new_index = {old: new for new, old in enumerate(keep)}

        def remap(indices, new_index=new_index):
            return None if indices is None else [new_index[i] if i >= 0 else i for i in indices]

        graph.tensors = [graph.tensors[i] for i in keep]
        graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
        for op in graph.operators or []:
            op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)
        for sig in m.signatureDefs or []:
            if sig.subgraphIndex == g:
                for entry in [*(sig.inputs or []), *(sig.outputs or [])]:
                    entry.tensorIndex = new_index[entry.tensorIndex]
    referenced = {t.buffer for graph in m.subgraphs for t in graph.tensors or []}
    for index, buffer in enumerate(m.buffers):
        if index and index not in referenced and buffer.data is not None:
            buffer.data = None


def _listed(indices) -> list:
    return [] if indices is None else list(indices)
