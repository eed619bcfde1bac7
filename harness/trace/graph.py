"""The graph side of the trace: Keras layer names read back from TFLite tensor names, the
float model's tensors matched to the int8 model's, and sub-models cut at chosen tensors.

Layer names. The converter keeps the Keras names in the tensor names, fused ops joined by
``;``: ``digits_cnn/quant_re_lu_1/Relu;digits_cnn/quant_batch_normalization_1/FusedBatchNormV3;…``.
Each part is ``<model>/<layer>/<tf op>``; the layer is the component before the tf op, with
tfmot's ``quant_`` prefix removed, so a QAT model's tensors and its float twin's name the same
layers. The first part names the layer whose output the tensor is (the last fused op).

Cutting. ``cut_model`` rewrites subgraph 0's outputs with the schema object API that ships in
ai-edge-litert (``ModelT.InitFromObj(Model.GetRootAs(buf, 0))``) and drops every op after the
last one needed, so a device whose intermediates are hidden (XNNPACK, OpenVINO, an Edge TPU)
returns that tensor as an ordinary output.
"""
from __future__ import annotations

import re
from pathlib import Path

from qat_harness.core import tflite

QUANT_PREFIX = "quant_"
_TF_SUFFIX = re.compile(r"\d+$")


def _schema():
    """The schema module with its object API and the real flatbuffers package, to write models
    (the reader's copy, ``core.tflite``, reads through checks)."""
    return tflite.load_schema("qat_harness._trace_schema")


_SCHEMA = None


def schema():
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = _schema()
    return _SCHEMA


# -- layer names --------------------------------------------------------------------------------
def strip_quant(name: str) -> str:
    return name[len(QUANT_PREFIX):] if name.startswith(QUANT_PREFIX) else name


def layer_names(tensor_name: str) -> list[str]:
    """The Keras layers a tensor name mentions, the output layer first, ``quant_`` stripped."""
    out = []
    for part in tensor_name.split(";"):
        comps = [c for c in part.split("/") if c]
        if len(comps) >= 3:
            layer = comps[-2]
        elif len(comps) == 2:
            layer = comps[0] if comps[0] != "StatefulPartitionedCall" else comps[1]
        else:
            layer = comps[0] if comps else part
        layer = strip_quant(layer)
        if layer not in out:
            out.append(layer)
    return out


def primary_layer(tensor_name: str) -> str:
    names = layer_names(tensor_name)
    return names[0] if names else tensor_name


def match_tensors(int8: tflite.ModelInfo, flt: tflite.ModelInfo) -> dict[int, int]:
    """int8 op-output tensor index -> float tensor index of the same layer's value.

    Candidates are the float model's inputs and op outputs with the same number of elements;
    a candidate must share a layer name (or the whole name, e.g. ``StatefulPartitionedCall:0``)
    with the int8 tensor. Among candidates: the same output layer first, then the most layers
    in common, then the one nearest in op order after the last match (the graphs are mostly
    in the same order)."""
    float_tensors: list[tuple[int, int]] = [(-1, t) for t in flt.inputs]
    float_tensors += [(op.index, t) for op in flt.ops for t in op.outputs if t >= 0]
    meta = {t: (set(layer_names(flt.tensor(t).name)), primary_layer(flt.tensor(t).name),
                element_count(flt.tensor(t).shape)) for _, t in float_tensors}
    matches: dict[int, int] = {}
    last = -1
    int8_items = [(-1, t) for t in int8.inputs] + [(op.index, t) for op in int8.ops for t in op.outputs if t >= 0]
    for _op_index, t in int8_items:
        ti = int8.tensor(t)
        names, prim, size = set(layer_names(ti.name)), primary_layer(ti.name), element_count(ti.shape)
        best, best_key = None, None
        for f_op, ft in float_tensors:
            fnames, fprim, fsize = meta[ft]
            if fsize != size:
                continue
            same_name = flt.tensor(ft).name == ti.name
            common = len(names & fnames)
            if not same_name and common == 0:
                continue
            key = (same_name, prim == fprim, common, -abs(f_op - last - 1))
            if best_key is None or key > best_key:
                best, best_key = (f_op, ft), key
        if best is not None:
            matches[t] = best[1]
            last = max(last, best[0])
    return matches


def element_count(shape) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


# -- cutting ------------------------------------------------------------------------------------
def cut_model(src: Path | bytes, outputs: list[int], dest: Path) -> Path:
    """Write a copy of the model whose subgraph-0 outputs are ``outputs`` (tensor indices),
    without the ops after the last one that writes them and without signature defs (they
    name the old outputs)."""
    s = schema()
    buf = src if isinstance(src, (bytes, bytearray)) else Path(src).read_bytes()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
    sg = model.subgraphs[0]
    wanted = [int(t) for t in outputs]
    last = -1
    for i, op in enumerate(sg.operators or []):
        if any(int(t) in wanted for t in (op.outputs if op.outputs is not None else [])):
            last = i
    sg.operators = list(sg.operators or [])[:last + 1]
    sg.outputs = wanted
    model.signatureDefs = None
    return write_model(model, dest, len(buf))


def write_model(model, dest: Path | str, size_hint: int = 0) -> Path:
    """Write a flatbuffer object model (``schema().ModelT``) as a .tflite file."""
    import flatbuffers

    builder = flatbuffers.Builder(1024 + size_hint)
    builder.Finish(model.Pack(builder), file_identifier=tflite.FILE_IDENTIFIER)
    dest = Path(dest)
    dest.write_bytes(bytes(builder.Output()))
    return dest
