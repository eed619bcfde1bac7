"""The trace's two measures of one op's output: an int8 value against float (``quant_error``:
relative error over the bulk of the values, steps of the tensor's scale, clipping), and a
device's value against the reference kernels' (``device_difference``: the project's one output
comparison, ``measure.difference.output_difference``, in the tensor's own domain)."""
from __future__ import annotations

import math

import numpy as np

from qat_harness.core import tflite
from qat_harness.measure.difference import OutputDifference, output_difference
from qat_harness.trace.results import Mismatch, QuantError, Thresholds

_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int4": (-8, 7)}


def per_example(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` as one row per example (a device may drop or add unit axes)."""
    return np.asarray(a).reshape(n, -1)


def quant_error(q: np.ndarray, f: np.ndarray, t: tflite.TensorInfo, n: int) -> QuantError:
    """A value of the int8 model's tensor ``t`` (int8 codes, or a float value on the same grid
    such as QAT Keras's fake-quant output) against a float value; steps are of ``t``'s scale.
    Raises ValueError when the shapes differ."""
    s = float(t.scales[0]) if t.scales else None
    if s and np.issubdtype(np.asarray(q).dtype, np.integer):
        zero_point = int(t.zero_points[0]) if t.zero_points else 0
        deq = (per_example(q, n).astype(np.float64) - zero_point) * s
    else:
        deq = per_example(q, n).astype(np.float64)
    ff = per_example(f, n).astype(np.float64)
    if deq.shape != ff.shape:
        raise ValueError(f"shapes {list(deq.shape)} and {list(ff.shape)} differ")
    d = np.abs(deq - ff)
    # the bulk of the values: the 1st to 99th percentile; an outlier range shows as crushed bulk
    lo, hi = (float(p) for p in np.percentile(ff, [1.0, 99.0])) if ff.size else (0.0, 0.0)
    bulk_mask = (ff >= lo) & (ff <= hi)
    mean_f = float(np.mean(np.abs(ff[bulk_mask]))) if bulk_mask.any() else 0.0
    mean_d = float(np.mean(d[bulk_mask])) if bulk_mask.any() else 0.0
    rel = mean_d / mean_f if mean_f > 0 else (0.0 if mean_d == 0 else math.inf)
    absmax = float(np.abs(ff).max())
    max_abs, mean_abs = float(d.max()), float(d.mean())
    if not s:
        return QuantError(max_abs, mean_abs, rel, absmax, mean_f)
    qmin, qmax = _INT_RANGES.get(t.dtype, (-128, 127))
    zp = int(t.zero_points[0]) if t.zero_points else 0
    # float values the tensor cannot hold: a range too narrow clips them, an error the bulk
    # measure does not see here but the next layers do
    excess = np.maximum(np.maximum(ff - (qmax - zp) * s, (qmin - zp) * s - ff), 0.0) / s
    bulk_abs = max(abs(lo), abs(hi))
    # the scale the bulk would need: a layer crushed by an outlier range is within half a step
    # of its own scale but many steps of this one
    bulk = min(s, max((hi - min(lo, 0.0)) / 255.0, s * 1e-6))
    return QuantError(max_abs, mean_abs, rel, absmax, mean_f, max_steps=max_abs / s, mean_steps=mean_abs / s,
                      clip_max_steps=float(excess.max()) if excess.size else 0.0,
                      clipped_fraction=float(np.mean(excess > 1.0)) if excess.size else 0.0,
                      representable=((qmin - zp) * s, (qmax - zp) * s),
                      outlier_ratio=absmax / max(bulk_abs, 1e-12) if absmax > 0 else None,
                      bulk_scale=bulk, mean_bulk_steps=mean_d / bulk)


def device_difference(dev: np.ndarray, ref: np.ndarray, t: tflite.TensorInfo, n: int) -> OutputDifference | Mismatch:
    """A device's value of tensor ``t`` against the reference kernels', per example; an output
    that cannot be compared (its shape differs) is a ``Mismatch``."""
    try:
        return output_difference(per_example(dev, n), per_example(ref, n), t)
    except ValueError as exc:
        return Mismatch(t.name, f"differs in shape from the reference kernels' value: {exc}")


def departs(difference: OutputDifference | Mismatch, thresholds: Thresholds, float_model: bool = False) -> bool:
    """Beyond the thresholds: quantized outputs in steps, float ones relative to their range
    (a float model's at ``threshold_float_rel``, float32 kernels' own precision; a float output
    of a quantized model carries its steps, at ``threshold_rel``), ids when any differs; an
    output that cannot be compared always departs."""
    if isinstance(difference, Mismatch):
        return True
    if difference.max_steps is not None:
        return difference.max_steps > thresholds.threshold_steps
    if difference.max_rel is not None:
        return difference.max_rel > (thresholds.threshold_float_rel if float_model else thresholds.threshold_rel)
    return difference.fraction_exact < 1.0


def computes_in_float(info: tflite.ModelInfo) -> bool:
    """No op writes a quantized tensor: a float model, whose devices are judged in relative error."""
    return not any(info.tensor(t).scales for op in info.ops for t in op.outputs if t >= 0)
