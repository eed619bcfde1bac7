"""Each op's measures, stage by stage, from the captured values: the int8 file on the reference
kernels against float (``quant``), and with the QAT Keras model, QAT Keras against float
(``keras_qat``: quantization itself) and the int8 file against QAT Keras (``conversion``, in
steps of the tensor's scale: the fake-quant grid and the int8 grid are the same scale). Each
measure carries beside it the largest relative error the op's inputs brought (``carried_*``)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qat_harness.core import tflite
from qat_harness.trace import graph
from qat_harness.trace.capture import TensorValues, output_tensor
from qat_harness.trace.measures import quant_error
from qat_harness.trace.results import Measure, OpTrace, QuantError, Unmeasured, measured

#: op index -> the ops that produce its inputs
Upstream = dict[int, list[int]]


def upstream_ops(info: tflite.ModelInfo) -> Upstream:
    producers = info.producers()
    return {op.index: [producers[i] for i in op.inputs if i >= 0 and i in producers] for op in info.ops}


def _compare(q: np.ndarray, f: np.ndarray, t: tflite.TensorInfo, n: int) -> QuantError | Unmeasured:
    try:
        return quant_error(q, f, t, n)
    except ValueError as exc:
        return Unmeasured(str(exc))


def carried(ops: list[OpTrace], producer_ops: list[int], measure: Callable[[OpTrace], Measure],
            carried_of: Callable[[OpTrace], float]) -> float:
    """The largest relative error of ``measure`` that the op's inputs bring; a producer without
    the measure passes on what it carried itself."""
    values = []
    for k in producer_ops:
        m = measured(measure(ops[k]))
        values.append(m.rel if m else carried_of(ops[k]))
    return float(max(values)) if values else 0.0


def quantization_stage(info: tflite.ModelInfo, float_info: tflite.ModelInfo | None, matches: dict[int, int],
                       ref: TensorValues, flt: TensorValues, n: int, upstream: Upstream) -> list[OpTrace]:
    """One ``OpTrace`` per op of the int8 model, with its int8-vs-float measure when it has a
    float counterpart."""
    ops: list[OpTrace] = []
    for op in info.ops:
        t = output_tensor(op)
        ti = info.tensor(t)
        names = graph.layer_names(ti.name)
        rec = OpTrace(op.index, op.opcode, t, ti.name, names[0] if names else ti.name, names,
                      list(ti.shape), ti.dtype, ti.scales[0] if ti.scales else None,
                      ti.zero_points[0] if ti.zero_points else None)
        ft = matches.get(t)
        if float_info is not None and ft is not None and t in ref:
            fvalue = flt.get(ft)
            if fvalue is not None:
                rec.float_tensor = float_info.tensor(ft).name
                rec.quant = _compare(ref[t], fvalue, ti, n)
        rec.carried_rel = carried(ops, upstream[op.index], lambda o: o.quant, lambda o: o.carried_rel)
        ops.append(rec)
    return ops


def keras_stages(ops: list[OpTrace], info: tflite.ModelInfo, keras_per_op: dict[int, np.ndarray],
                 flt: TensorValues, matches: dict[int, int], ref: TensorValues, n: int, upstream: Upstream) -> None:
    """QAT Keras vs float (quantization) and the int8 file vs QAT Keras (conversion), per op."""
    if not keras_per_op:
        return
    for op in info.ops:
        rec = ops[op.index]
        value = keras_per_op.get(op.index)
        if value is not None:
            ti = info.tensor(rec.tensor)
            ft = matches.get(rec.tensor)
            if ft is not None and ft in flt:
                rec.keras_qat = _compare(value, flt[ft], ti, n)
            if rec.tensor in ref:
                rec.conversion = _compare(ref[rec.tensor], value, ti, n)
        rec.carried_keras_rel = carried(ops, upstream[op.index], lambda o: o.keras_qat, lambda o: o.carried_keras_rel)
        rec.carried_conversion_rel = carried(ops, upstream[op.index], lambda o: o.conversion,
                                             lambda o: o.carried_conversion_rel)
