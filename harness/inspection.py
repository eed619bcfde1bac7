"""The structural claims read from a .tflite flatbuffer: full-integer (C4), per-axis weight
quantization (C5) and BatchNorm folding (M3). Each check takes the reader's ``ModelInfo``
(``core.tflite``) and returns a typed result with a one-line ``reason``."""
from __future__ import annotations

import dataclasses

from qat_harness.core.tflite import CONV_OPS, DENSE_OPS, INTEGER_OK_DTYPES, WEIGHT_OPS, ModelInfo, OpInfo

#: The io dtypes of a full-integer model: int8, or uint8 (the legacy uint8 scheme, and the
#: converter's documented ``inference_input_type=tf.uint8`` output around an int8 body).
INTEGER_IO_DTYPES = ("int8", "uint8")
#: How many float op names a measured cell shows before "+N more" (the full list stays in the check).
FLOAT_OPS_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class FullIntegerCheck:
    ok: bool
    io_dtypes: dict
    float_ops: list
    dequantize_ops: int
    quantize_ops: int
    requantize_ops: int
    float_tensors: int
    other_dtypes: list
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def float_ops_shown(self) -> list[str]:
        """The first ``FLOAT_OPS_SHOWN`` float op names, then '+N more': a table cell's worth."""
        shown = list(self.float_ops[:FLOAT_OPS_SHOWN])
        rest = len(self.float_ops) - len(shown)
        return shown + [f"+{rest} more"] if rest else shown


@dataclasses.dataclass(frozen=True)
class PerAxisCheck:
    ok: bool
    conv_per_channel: int
    conv_per_tensor: int
    conv_other: int
    dense: dict
    reason: str
    per_tensor_uint8: int = 0  # of conv_per_tensor: uint8 weights (the legacy scheme has no per-axis form)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BnFoldCheck:
    ok: bool
    unfolded_after: list
    standalone_bn: list
    bn_named_ops: list
    conv_ops: int
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- C4: full integer -------------------------------------------------------------------------
def full_integer_check(info: ModelInfo, require_int8_io: bool = True) -> FullIntegerCheck:
    """Claim C4: no float op and no float tensor in the model.

    Rules:
    - ``float_ops``: ops with a float input or output *activation* (constants are counted
      in ``float_tensors``). DEQUANTIZE (int -> float) always counts in ``dequantize_ops``.
    - ``quantize_ops``: QUANTIZE ops that read a float tensor, i.e. a float -> int boundary.
      QUANTIZE int8 -> int8 (a requantization the converter inserts, e.g. right after the
      input or before a concat) is integer arithmetic: counted in ``requantize_ops`` only.
    - With ``require_int8_io`` the model inputs and outputs must be 8-bit integers: int8, or
      uint8 (``INTEGER_IO_DTYPES``: a legacy uint8 model and the converter's uint8-io output are
      full-integer too; the QUANTIZE uint8 <-> int8 at their edges reads no float). Without it,
      float io is accepted together with the QUANTIZE that reads a model input and the
      DEQUANTIZE that writes a model output (the "integer body, float interface" variant).
    - Integer tensors other than int8/int32 (uint8, int16 activations, int64, bool, ...) do not
      fail the check (they are integer), but they are listed in ``other_dtypes``.
    """
    io = {"inputs": [info.tensors[i].dtype for i in info.inputs],
          "outputs": [info.tensors[i].dtype for i in info.outputs]}
    boundary_ops: set[int] = set()
    boundary_tensors: set[int] = set()
    if not require_int8_io:
        for op in info.ops:
            if op.opcode == "QUANTIZE" and op.inputs and op.inputs[0] in info.inputs:
                boundary_ops.add(op.index)
            if op.opcode == "DEQUANTIZE" and any(o in info.outputs for o in op.outputs):
                boundary_ops.add(op.index)
        boundary_tensors = set(info.inputs) | set(info.outputs)

    float_ops, dequant, quant, requant = [], 0, 0, 0
    for op in info.ops:
        if op.index in boundary_ops:
            continue
        if op.opcode == "DEQUANTIZE":
            dequant += 1
        if op.opcode == "QUANTIZE":
            src = info.tensors[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
            if src is not None and src.is_float:
                quant += 1
            else:
                requant += 1
        activations = [info.tensors[t] for t in op.inputs + op.outputs
                       if t >= 0 and not info.tensors[t].is_constant]
        if any(t.is_float for t in activations):
            float_ops.append(op.opcode)
    float_tensors = sum(1 for t in info.tensors if t.is_float and t.index not in boundary_tensors)
    other = sorted({t.dtype for t in info.tensors
                    if not t.is_float and t.dtype not in INTEGER_OK_DTYPES})

    problems = []
    if require_int8_io:
        bad_io = [d for d in io["inputs"] + io["outputs"] if d not in INTEGER_IO_DTYPES]
        if bad_io:
            problems.append(f"io is {io['inputs']} -> {io['outputs']}, not int8 or uint8")
    if float_ops:
        problems.append(f"{len(float_ops)} float op(s): {_summary(float_ops)}")
    if dequant:
        problems.append(f"{dequant} DEQUANTIZE op(s)")
    if quant:
        problems.append(f"{quant} float->int QUANTIZE op(s)")
    if float_tensors and not float_ops:
        problems.append(f"{float_tensors} float tensor(s)")
    if problems:
        reason = "; ".join(problems)
    else:
        reason = (f"all {len(info.ops)} ops integer, io {io['inputs']} -> {io['outputs']}"
                  + (f", {requant} int->int requantize op(s)" if requant else ""))
    if info.n_subgraphs > 1:
        reason += f" (main subgraph only; {info.n_subgraphs - 1} other subgraph(s) not inspected)"
    return FullIntegerCheck(ok=not problems, io_dtypes=io, float_ops=float_ops, dequantize_ops=dequant,
                            quantize_ops=quant, requantize_ops=requant, float_tensors=float_tensors,
                            other_dtypes=other, reason=reason)


def _summary(opcodes: list) -> str:
    counts: dict[str, int] = {}
    for o in opcodes:
        counts[o] = counts.get(o, 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(counts.items()))


# -- C5: per-axis weights ---------------------------------------------------------------------
def weight_granularity(info: ModelInfo) -> list:
    """One row per conv / depthwise / fully-connected / transpose-conv op describing how its
    weight tensor is quantized. A weight produced by a DEQUANTIZE op (float16 or
    weight-only models) is followed back to the stored tensor and flagged ``via_dequantize``."""
    producers = info.producers()
    rows = []
    for op in info.ops:
        if op.opcode not in WEIGHT_OPS:
            continue
        pos, axis = WEIGHT_OPS[op.opcode]
        row = {"op_index": op.index, "opcode": op.opcode, "weight_tensor": None, "weight_dtype": None,
               "granularity": "none", "n_scales": 0, "out_channels": None,
               "quantized_dimension": None, "expected_dimension": axis, "via_dequantize": False}
        if len(op.inputs) <= pos or op.inputs[pos] < 0:
            rows.append(row)
            continue
        w = info.tensors[op.inputs[pos]]
        row["out_channels"] = w.shape[axis] if len(w.shape) > axis else None
        src = producers.get(w.index)
        if src is not None and info.ops[src].opcode == "DEQUANTIZE" and info.ops[src].inputs:
            w = info.tensors[info.ops[src].inputs[0]]
            row["via_dequantize"] = True
        row["weight_tensor"], row["weight_dtype"] = w.index, w.dtype
        if w.scales:
            row["n_scales"] = len(w.scales)
            row["quantized_dimension"] = w.quantized_dimension
            row["granularity"] = "per-channel" if len(w.scales) > 1 else "per-tensor"
        elif w.is_float:
            row["granularity"] = "float"
        rows.append(row)
    return rows


def per_axis_check(info: ModelInfo) -> PerAxisCheck:
    """Claim C5: every conv / depthwise conv weight has one scale per output channel on the
    output-channel axis. Dense weights are reported, not judged (QAT gives per-tensor, PTQ
    per-channel; both are deployable). A single-output-channel conv cannot tell the two apart
    and is not held against the claim. No conv at all -> ok with zero counts (nothing to judge)."""
    rows = weight_granularity(info)
    conv = [r for r in rows if r["opcode"] in CONV_OPS]
    good, bad = 0, []
    for r in conv:
        if (r["granularity"] == "per-channel" and r["n_scales"] == r["out_channels"]
                and r["quantized_dimension"] == r["expected_dimension"]):
            good += 1
        elif r["granularity"] == "per-tensor" and r["out_channels"] == 1:
            good += 1
        else:
            bad.append(r)
    per_tensor = [r for r in bad if r["granularity"] == "per-tensor"]
    dense = {"per-tensor": 0, "per-channel": 0, "float": 0, "none": 0}
    for r in rows:
        if r["opcode"] in DENSE_OPS:
            dense[r["granularity"]] += 1
    dense = {k: v for k, v in dense.items() if v or k in ("per-tensor", "per-channel")}
    dense_txt = ", ".join(f"{v} {k}" for k, v in dense.items() if v) or "none"
    if not conv:
        reason = f"no conv weights to judge; dense: {dense_txt}"
    elif bad and len(per_tensor) == len(bad):
        first = per_tensor[0]
        reason = (f"per-tensor: {len(bad)} of {len(conv)} conv weight(s) have one scale for all their output "
                  f"channels, e.g. op {first['op_index']} {first['opcode']}: {_weight_quantization(first)}; "
                  f"dense: {dense_txt}")
    elif bad:
        first = bad[0]
        some_per_tensor = f" ({len(per_tensor)} per-tensor)" if per_tensor else ""
        reason = (f"{len(bad)} of {len(conv)} conv weight(s) not per-channel{some_per_tensor}, "
                  f"e.g. op {first['op_index']} {first['opcode']}: {_weight_quantization(first)}; "
                  f"dense: {dense_txt}")
    else:
        reason = f"all {len(conv)} conv weight(s) per-channel on the output axis; dense: {dense_txt}"
    return PerAxisCheck(ok=not bad, conv_per_channel=good, conv_per_tensor=len(per_tensor),
                        conv_other=len(bad) - len(per_tensor), dense=dense, reason=reason,
                        per_tensor_uint8=sum(1 for r in per_tensor if r["weight_dtype"] == "uint8"))


def _weight_quantization(row: dict) -> str:
    """How one weight_granularity row is quantized, in words."""
    channels = f"{row['out_channels']} output channels"
    if row["granularity"] == "float":
        return f"{row['weight_dtype']} weights, not quantized"
    if row["granularity"] == "none":
        return "no quantized weight tensor"
    if row["granularity"] == "per-tensor":
        return f"{row['weight_dtype']} weights, 1 scale for {channels}"
    return (f"{row['weight_dtype']} weights, {row['n_scales']} scales on axis {row['quantized_dimension']} "
            f"for {channels} on axis {row['expected_dimension']}")


# -- M3: BatchNorm folding --------------------------------------------------------------------
def _is_constant(info: ModelInfo, tensor_index: int, producers: dict) -> bool:
    """Stored data, or a DEQUANTIZE of stored data (float16 models keep constants that way)."""
    t = info.tensors[tensor_index]
    if t.is_constant:
        return True
    src = producers.get(tensor_index)
    if src is None or info.ops[src].opcode != "DEQUANTIZE" or not info.ops[src].inputs:
        return False
    first = info.ops[src].inputs[0]
    return first >= 0 and info.tensors[first].is_constant


def _per_channel_constant(info: ModelInfo, tensor_index: int, channels, producers: dict) -> bool:
    """A constant holding one value per channel: shape [C] or [1, ..., 1, C]."""
    t = info.tensors[tensor_index]
    if not t.shape or channels is None or not _is_constant(info, tensor_index, producers):
        return False
    return t.shape[-1] == channels and all(d == 1 for d in t.shape[:-1])


def _affine_partner(info: ModelInfo, op: OpInfo, activation: int, producers: dict) -> bool:
    """op is MUL/ADD/SUB reading `activation` and a per-channel constant (BN's scale/offset)."""
    if op.opcode not in ("MUL", "ADD", "SUB") or len(op.inputs) != 2 or activation not in op.inputs:
        return False
    other = op.inputs[1] if op.inputs[0] == activation else op.inputs[0]
    act = info.tensors[activation]
    channels = act.shape[-1] if act.shape else None
    return other >= 0 and _per_channel_constant(info, other, channels, producers)


def batchnorm_fold_check(info: ModelInfo) -> BnFoldCheck:
    """Claim M3: BatchNorm after Conv2D / DepthwiseConv2D is folded into the conv.

    - ``unfolded_after``: conv / depthwise ops whose output goes straight into a MUL/ADD/SUB
      with a constant per-channel vector (a BN, or part of one, left as arithmetic).
    - ``standalone_bn``: elsewhere in the graph, a MUL by a per-channel constant followed by
      an ADD/SUB of one (x * scale + offset: an inference BN that nothing absorbed).
    - ``bn_named_ops``: ops whose opcode names a BatchNorm (e.g. CUSTOM:FlexFusedBatchNormV3).
      Tensor names are not used: the converter keeps BN names on folded conv outputs.
    ok = none of the three.
    """
    consumers, producers = info.consumers(), info.producers()
    conv_ops = [op for op in info.ops if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    unfolded, flagged = [], set()
    for conv in conv_ops:
        for out in conv.outputs:
            for c in consumers.get(out, []):
                if _affine_partner(info, info.ops[c], out, producers):
                    unfolded.append(conv.index)
                    flagged.add(c)
    unfolded = sorted(set(unfolded))

    standalone = []
    for op in info.ops:
        if op.opcode != "MUL" or op.index in flagged:
            continue
        act = next((t for t in op.inputs if t >= 0 and not _is_constant(info, t, producers)), None)
        if act is None or not _affine_partner(info, op, act, producers):
            continue
        for out in op.outputs:
            if any(_affine_partner(info, info.ops[c], out, producers) and info.ops[c].opcode != "MUL"
                   for c in consumers.get(out, [])):
                standalone.append(op.index)
    named = [op.index for op in info.ops
             if "batchnorm" in op.opcode.lower().replace("_", "")]

    problems = []
    if unfolded:
        problems.append(f"BN left as MUL/ADD after conv op(s) {unfolded}")
    if standalone:
        problems.append(f"standalone BN (MUL+ADD by per-channel constants) at op(s) {standalone}")
    if named:
        problems.append(f"BatchNorm op(s) {[info.ops[i].opcode for i in named]}")
    reason = "; ".join(problems) if problems else (
        f"no MUL/ADD by a per-channel constant after any of {len(conv_ops)} conv op(s), "
        "no BatchNorm op")
    return BnFoldCheck(ok=not problems, unfolded_after=unfolded, standalone_bn=standalone,
                       bn_named_ops=named, conv_ops=len(conv_ops), reason=reason)
