"""``run_trace``: where an int8 model parts ways with float, op by op, and where a device parts
ways with LiteRT's reference kernels.

Stages, per op of the int8 model in its order, on one fixed set of inputs:

- ``float``: the float .tflite's value of the same layer (matched by Keras layer name,
  ``graph.match_tensors``), run on LiteRT's builtin kernels with every tensor kept. The float
  .tflite is the float Keras model converted without quantization: the float Keras layer
  output to float32 rounding;
- ``qat_keras``: the QAT Keras model's output of the op's layer (its fake-quant value), when
  the build kept the QAT weights (``QatKerasModel``): the model is rebuilt in a Keras child
  (``keras_worker``). Compared with float: the error quantization itself brings (QAT's
  fake quantization and fine-tuning);
- ``reference``: the int8 value on LiteRT's reference kernels (``BUILTIN_REF``) with every
  tensor kept, dequantized and compared with float: the error in steps of that tensor's
  scale, and the relative error ``mean|int8 - float| / mean|float|`` over the bulk of the
  values (those between the float tensor's 1st and 99th percentiles); and, with the QAT
  Keras stage, compared with the QAT Keras value in steps of the tensor's scale: what
  conversion changed (the fake-quant grid and the int8 grid are the same scale);
- one per device: the device's int8 value of the op's output, obtained by cutting the graph
  there (``graph.cut_model``) and running the cut model through the device's ordinary
  ``run``; compared with the reference kernels in int8 steps. Devices are bisected over the
  op sequence (1 + ceil(log2(ops)) runs at most), not run once per op.

Without the QAT Keras model (a .tflite given as it is, a layer-matrix cell) the reference
kernels' error against float stands for quantization and conversion together, and the trace
says so in its notes.

Culprits. A quantization culprit is the first op whose relative error is above
``threshold_rel`` and more than ``jump_factor`` times what its inputs carried (the largest
relative error among the ops that produce its inputs): the error appeared there, it was not
inherited, and whose mean error is above ``threshold_steps`` steps of the scale the bulk of
its values needs (0.1th-99.9th percentile range / 255; never more than its own scale), so that
plain rounding of small values is never a culprit. Relative error and bulk steps are the
measures here because a layer crushed by an outlier range is within half a step of its own
(huge) scale while having lost everything else. A device
culprit is the first op where the device differs from the reference kernels by more than
``threshold_steps`` int8 steps (the bisection's answer). The culprit named is the first of
these in op order: "quantization" when it is a quantization culprit (the error is already
there in the QAT Keras model, or, without it, on the reference kernels), "conversion" when the
reference kernels part from the QAT Keras model at an op where the QAT Keras model still
agrees with float (same rule, measured between the int8 file and the QAT Keras model, and
more than ``threshold_steps`` steps of the tensor's own scale on average), "device" otherwise.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qat_harness.claims.tolerances import (
    TRACE_CLIP_BLAME_STEPS,
    TRACE_DEPARTURE_REL,
    TRACE_DEPARTURE_STEPS,
    TRACE_JUMP_FACTOR,
)
from qat_harness.core import tflite
from qat_harness.core.child import run_child
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import Device, save_inputs
from qat_harness.trace import graph

WORKER = "qat_harness.trace.worker"
KERAS_WORKER = "qat_harness.trace.keras_worker"
NO_KERAS_NOTE = ("no QAT Keras model (a .tflite given as it is, or a build that kept no QAT weights): "
                 "quantization and conversion are traced as one stage, int8 on the reference kernels vs float")


@dataclasses.dataclass
class OpTrace:
    index: int
    opcode: str
    tensor: int
    tensor_name: str
    layer: str
    layers: list[str]
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None
    float_tensor: str | None = None
    quant: dict | None = None          # int8-on-reference vs float
    carried_rel: float = 0.0           # the largest rel error among the producers of its inputs
    keras_qat: dict | None = None      # QAT Keras (fake-quant) vs float: quantization itself
    conversion: dict | None = None     # int8-on-reference vs QAT Keras, in steps of its scale
    carried_keras_rel: float = 0.0
    carried_conversion_rel: float = 0.0
    devices: dict = dataclasses.field(default_factory=dict)  # device -> vs reference, at cuts
    verdict: str = "PASS"
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TraceResult:
    float_path: str
    int8_path: str
    n_examples: int
    thresholds: dict
    ops: list[OpTrace]
    culprit: dict | None
    quantization_culprit: dict | None  # the int8 file's culprit: stage quantization or conversion
    devices: dict                      # device -> bisection record
    notes: list[str]
    reference: str = "LiteRT reference kernels (BUILTIN_REF)"
    files: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    keras_stage: bool = False          # the QAT Keras model was traced

    def to_dict(self) -> dict:
        return {"schema": "qat-harness-trace/1", **dataclasses.asdict(self)}

    @property
    def verdict(self) -> str:
        return "FAIL" if self.culprit else "PASS"


# -- the child runs -----------------------------------------------------------------------------
def _trace_child(model: Path, input_tensors: list[int], inputs: list[np.ndarray], resolver: str,
                 tensors: list[int], tmp: Path, tag: str, timeout_s: float) -> dict[int, np.ndarray]:
    in_path, out_path = tmp / f"{tag}-in.npz", tmp / f"{tag}-out.npz"
    save_inputs(in_path, inputs)
    run_child(WORKER, {"model": str(Path(model).resolve()), "inputs": str(in_path),
                       "out": str(out_path), "resolver": resolver, "tensors": tensors}, timeout_s)
    with np.load(out_path, allow_pickle=False) as npz:
        values = {int(k[1:]): npz[k] for k in npz.files}
    for i, x in zip(input_tensors, inputs):
        values.setdefault(i, x)
    return values


def _as_list(x) -> list[np.ndarray]:
    return [np.asarray(v) for v in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]


# -- measures -----------------------------------------------------------------------------------
_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int4": (-8, 7)}

def _flat(a: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(a).reshape(n, -1)


def quant_error(q: np.ndarray, f: np.ndarray, t: tflite.TensorInfo, n: int) -> dict:
    """A value of the int8 model's tensor ``t`` (int8 codes, or a float value on the same grid
    such as QAT Keras's fake-quant output) against a float value; steps are of ``t``'s scale."""
    s = float(t.scales[0]) if t.scales else None
    if s and np.issubdtype(np.asarray(q).dtype, np.integer):
        deq = (_flat(q, n).astype(np.float64) - int(t.zero_points[0])) * s
    else:
        deq = _flat(q, n).astype(np.float64)
    ff = _flat(f, n).astype(np.float64)
    if deq.shape != ff.shape:
        return {"error": f"shapes {list(deq.shape)} and {list(ff.shape)} differ"}
    d = np.abs(deq - ff)
    # the bulk of the values: the 1st to 99th percentile; an outlier range shows as crushed bulk
    lo, hi = (np.percentile(ff, [1.0, 99.0]) if ff.size else (0.0, 0.0))
    bulk_mask = (ff >= lo) & (ff <= hi)
    mean_f = float(np.mean(np.abs(ff[bulk_mask]))) if bulk_mask.any() else 0.0
    mean_d = float(np.mean(d[bulk_mask])) if bulk_mask.any() else 0.0
    out = {"max_abs": float(d.max()), "mean_abs": float(d.mean()),
           "rel": mean_d / mean_f if mean_f > 0 else (0.0 if mean_d == 0 else math.inf),
           "float_absmax": float(np.abs(ff).max()), "float_bulk_mean_abs": mean_f}
    if s:
        out.update(max_steps=float(d.max() / s), mean_steps=float(d.mean() / s))
        qmin, qmax = _INT_RANGES.get(t.dtype, (-128, 127))
        zp = int(t.zero_points[0]) if t.zero_points else 0
        # float values the tensor cannot hold: a range too narrow clips them, an error the
        # bulk measure does not see here but the next layers do
        excess = np.maximum(np.maximum(ff - (qmax - zp) * s, (qmin - zp) * s - ff), 0.0) / s
        out.update(clip_max_steps=float(excess.max()) if excess.size else 0.0,
                   clipped_fraction=float(np.mean(excess > 1.0)) if excess.size else 0.0,
                   representable=[(qmin - zp) * s, (qmax - zp) * s])
        bulk_abs = max(abs(float(lo)), abs(float(hi)))
        if np.abs(ff).max() > 0:
            out["outlier_ratio"] = float(np.abs(ff).max() / max(bulk_abs, 1e-12))
        # the scale the bulk would need: a layer crushed by an outlier range is within half a
        # step of its own scale but many steps of this one
        bulk = min(s, max(float(hi - min(lo, 0.0)) / 255.0, s * 1e-6))
        out.update(bulk_scale=bulk, mean_bulk_steps=mean_d / bulk)
    else:
        out.update(mean_bulk_steps=None)
    return out


def device_error(dev: np.ndarray, ref: np.ndarray, t: tflite.TensorInfo, n: int) -> dict:
    a, b = _flat(dev, n), _flat(ref, n)
    if a.shape != b.shape:
        return {"error": f"shape {list(a.shape)} differs from the reference {list(b.shape)}", "max_steps": math.inf}
    if t.scales and np.issubdtype(a.dtype, np.integer):
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
        return {"domain": f"{t.dtype} steps", "max_steps": int(d.max()), "mean_steps": float(d.mean()),
                "fraction_exact": float(np.mean(d == 0))}
    if np.issubdtype(a.dtype, np.floating):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        scale = max(float(np.abs(b).max()), 1e-12)
        return {"domain": "float", "max_abs": float(d.max()), "max_rel": float(d.max() / scale),
                "fraction_exact": float(np.mean(d == 0))}
    eq = float(np.mean(a == b))
    return {"domain": "ids", "fraction_exact": eq}


def _departs(err: dict, threshold_steps: float, threshold_rel: float) -> bool:
    if "error" in err:
        return True
    if "max_steps" in err:
        return err["max_steps"] > threshold_steps
    if "max_rel" in err:
        return err["max_rel"] > threshold_rel
    return err.get("fraction_exact", 1.0) < 1.0


# -- bisection on a device ----------------------------------------------------------------------
class _Bisector:
    def __init__(self, name: str, dev: Device, int8_path: Path, info: tflite.ModelInfo,
                 xq: list[np.ndarray], ref: dict[int, np.ndarray], ops: list[OpTrace], n: int,
                 tmp: Path, threshold_steps: float, threshold_rel: float, timeout_s: float,
                 flt: dict[int, np.ndarray] | None = None, matches: dict[int, int] | None = None):
        self.flt, self.matches = flt or {}, matches or {}
        self.name, self.dev, self.int8_path, self.info = name, dev, int8_path, info
        self.xq, self.ref, self.ops, self.n, self.tmp = xq, ref, ops, n, tmp
        self.threshold_steps, self.threshold_rel, self.timeout_s = threshold_steps, threshold_rel, timeout_s
        self.runs: list[dict] = []

    def measure(self, k: int) -> bool | None:
        """Run the model cut after op ``k`` on the device; True when it departs there, None
        when the device cannot run the cut."""
        op = self.info.ops[k]
        outs = [t for t in op.outputs if t >= 0]
        path = graph.cut_model(self.int8_path, outs, self.tmp / f"{self.name}-cut{k}.tflite")
        workdir = self.tmp / f"{self.name}-work{k}"
        workdir.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        try:
            path, _ = self.dev.prepare(path, workdir)
            result = self.dev.run(path, self.xq if len(self.xq) > 1 else self.xq[0], self.timeout_s)
        except DeviceError as exc:
            self.runs.append({"op": k, "error": f"{exc.kind}: {exc.reason}"[:300]})
            self.ops[k].devices[self.name] = {"error": f"{exc.kind}: {exc.reason}"[:300], "cut": True}
            return None
        values = result.all_outputs
        worst, departs = None, False
        for t, v in zip(outs, values):
            if t not in self.ref:
                continue
            err = device_error(v, self.ref[t], self.info.tensor(t), self.n)
            departs = departs or _departs(err, self.threshold_steps, self.threshold_rel)
            ft = self.matches.get(t)
            if ft is not None and ft in self.flt and "error" not in err:
                vs_float = quant_error(v, self.flt[ft], self.info.tensor(t), self.n)
                if "rel" in vs_float:
                    err["rel_vs_float"] = vs_float["rel"]
            if worst is None or err.get("max_steps", 0) > worst.get("max_steps", 0):
                worst = err
        rec = {**(worst or {}), "cut": True, "departs": departs}
        self.ops[k].devices[self.name] = rec
        self.runs.append({"op": k, "seconds": round(time.perf_counter() - t0, 3), "departs": departs,
                          **{key: rec[key] for key in ("max_steps", "mean_steps", "max_rel", "rel_vs_float")
                             if key in rec}})
        return departs

    def bisect(self) -> dict:
        last = len(self.info.ops) - 1
        at_end = self.measure(last)
        cannot = None
        while at_end is None and last > 0 and len(self.runs) < 4:
            # the device cannot run the whole model: trace what it can run
            cannot = cannot if cannot is not None else last
            last -= 1
            at_end = self.measure(last)
        if at_end is None:
            return {"status": "error", "reason": self.runs[-1]["error"], "runs": self.runs}
        if not at_end:
            where = "the output is" if cannot is None else (
                f"op {last}'s output (the last it can run: cuts from op {cannot} fail: "
                f"{self.runs[0].get('error', '')[:100]}) is")
            return {"status": "agrees", "first_departing_op": None, "runs": self.runs,
                    "reason": f"{where} within {self.threshold_steps:g} step(s) of the reference kernels"}
        lo, hi = -1, last  # ops <= lo agree, op hi departs
        while hi - lo > 1:
            mid = (lo + hi) // 2
            verdict, probe = None, mid
            while probe < hi:  # a cut the device cannot run: try the next op
                verdict = self.measure(probe)
                if verdict is not None:
                    break
                probe += 1
            if verdict is None:
                return {"status": "interval", "first_departing_op": hi, "agrees_up_to": lo, "runs": self.runs,
                        "reason": f"the device could not run cuts between op {lo + 1} and op {hi}"}
            if verdict:
                hi = probe
            else:
                lo = probe
        return {"status": "departs", "first_departing_op": hi, "agrees_up_to": lo, "runs": self.runs,
                "reason": f"op {hi} ({self.info.ops[hi].opcode}) is the first whose output departs from "
                          f"the reference kernels by more than {self.threshold_steps:g} step(s)"}


# -- the QAT Keras stage ------------------------------------------------------------------------
@dataclasses.dataclass
class KerasValues:
    """The QAT Keras model's values: per Keras layer name, and per model output."""
    by_layer: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    missing: list[str]
    output_layers: list[str]           # layers whose output is a model output


def _keras_child(qat_keras, inputs: list[np.ndarray], layers: list[str], n_outputs: int, tmp: Path,
                 timeout_s: float) -> KerasValues:
    in_path, out_path = tmp / "keras-in.npz", tmp / "keras-out.npz"
    np.savez(in_path, **{f"in_{i}": np.asarray(x, dtype=np.float32) for i, x in enumerate(inputs)})
    resp = run_child(KERAS_WORKER, {"source": qat_keras.source, "weights": str(Path(qat_keras.weights).resolve()),
                                    "inputs": str(in_path), "out": str(out_path), "layers": layers,
                                    "model_outputs": n_outputs}, timeout_s, env=qat_keras.env)
    with np.load(out_path, allow_pickle=False) as npz:
        by_layer = {name: npz[key] for name, key in resp["found"].items()}
        outputs = [npz[f"output_{j}"] for j in range(n_outputs) if f"output_{j}" in npz.files]
    return KerasValues(by_layer, outputs, list(resp.get("missing", [])), list(resp.get("output_layers", [])))


def _keras_layers_wanted(info: tflite.ModelInfo) -> list[str]:
    names = []
    for op in info.ops:
        t = next((o for o in op.outputs if o >= 0), None)
        layer = graph.primary_layer(info.tensor(t).name)
        if t not in info.outputs and layer not in names:
            names.append(layer)
    return names


def keras_value_per_op(info: tflite.ModelInfo, values: KerasValues) -> dict[int, np.ndarray]:
    """op index -> the QAT Keras value of its output. A model output takes the model's output;
    a layer's value goes to the last op (in op order) that names it as its output layer and
    has as many elements (the ops before it compute parts of the layer); a layer whose output
    is a model output has no other op (its last part is the output op)."""
    out: dict[int, np.ndarray] = {}
    claimed: set[str] = set(values.output_layers)
    for op in reversed(info.ops):
        t = next((o for o in op.outputs if o >= 0), None)
        ti = info.tensor(t)
        if t in info.outputs and info.outputs.index(t) < len(values.outputs):
            value = values.outputs[info.outputs.index(t)]
        else:
            layer = graph.primary_layer(ti.name)
            value = values.by_layer.get(layer)
            if value is None or layer in claimed:
                continue
            if value[0].size != graph.element_count(ti.shape):  # a different part of the layer
                continue
            claimed.add(layer)
        out[op.index] = value
    return out


# -- the trace ----------------------------------------------------------------------------------
def run_trace(float_path, int8_path, inputs, devices: dict[str, Device], out_dir: Path,
              threshold_steps: float = TRACE_DEPARTURE_STEPS, threshold_rel: float = TRACE_DEPARTURE_REL,
              jump_factor: float = TRACE_JUMP_FACTOR,
              timeout_s: float = 600.0, write: bool = True,
              input_names: list[str] | None = None, qat_keras=None) -> TraceResult:
    """Trace ``int8_path`` against ``float_path`` (None: the device stages only) on the float
    ``inputs`` (examples first; a list for several inputs, in ``input_names`` order), on every
    device of ``devices``; with ``qat_keras`` (``build.artifacts.QatKerasModel``), the QAT
    Keras model's layer outputs too, so that quantization and conversion are told apart. Writes
    trace.json, trace.md, trace.png and Model Explorer node data into ``out_dir``. The devices'
    own ``run`` does the work (children, timeouts, errors)."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    int8_path = Path(int8_path)
    info = tflite.inspect_model(int8_path)
    notes: list[str] = []
    x = _as_list(inputs)
    n = len(x[0])
    xq = _as_list(tflite.model_inputs(info, x if len(x) > 1 else x[0], input_names))
    op_tensors = [t for op in info.ops for t in op.outputs if t >= 0]

    finfo, matches = None, {}
    if float_path is not None:
        finfo = tflite.inspect_model(float_path)
        matches = graph.match_tensors(info, finfo)
        xf = _as_list(tflite.model_inputs(finfo, x if len(x) > 1 else x[0], input_names))

    with tempfile.TemporaryDirectory(prefix="qat-trace-") as tmp_name:
        tmp = Path(tmp_name)
        with ThreadPoolExecutor(max_workers=3) as pool:
            ref_job = pool.submit(_trace_child, int8_path, info.inputs, xq, "ref", op_tensors, tmp, "int8", timeout_s)
            flt_job = keras_job = None
            if finfo is not None:
                wanted = sorted({v for v in matches.values() if v not in finfo.inputs})
                flt_job = pool.submit(_trace_child, Path(float_path), finfo.inputs, xf, "builtin", wanted, tmp,
                                      "float", timeout_s)
            if qat_keras is not None:
                keras_job = pool.submit(_keras_child, qat_keras, x, _keras_layers_wanted(info),
                                        len(info.outputs), tmp, timeout_s)
            try:
                ref = ref_job.result()
                reference = "LiteRT reference kernels (BUILTIN_REF)"
            except DeviceError as exc:
                # LiteRT's reference kernels abort on some int8 graphs (an int8 SOFTMAX whose
                # output is not quantized as 1/256, -128): the builtin kernels stand in
                ref = _trace_child(int8_path, info.inputs, xq, "builtin", op_tensors, tmp, "int8b", timeout_s)
                reference = "LiteRT builtin kernels without delegates (the reference kernels failed)"
                notes.append(f"the reference kernels failed on this model ({exc.kind}: {exc.reason[:120]}); "
                             "the int8 values are LiteRT's builtin (optimized, non-delegated) kernels'")
            flt = flt_job.result() if flt_job else {}
            keras_per_op: dict[int, np.ndarray] = {}
            if keras_job is not None:
                try:
                    keras_values = keras_job.result()
                    keras_per_op = keras_value_per_op(info, keras_values)
                    unmatched = [o.index for o in info.ops if o.index not in keras_per_op]
                    if unmatched:
                        notes.append(f"{len(unmatched)} op(s) have no QAT Keras value (an op inside a layer, "
                                     f"or a layer with no single output): {unmatched[:20]}")
                except DeviceError as exc:
                    notes.append(f"the QAT Keras model could not be rebuilt ({exc.kind}: {exc.reason[:160]}); "
                                 "quantization and conversion are traced as one stage")
        if not keras_per_op and qat_keras is None:
            notes.append(NO_KERAS_NOTE)

        producers = info.producers()
        # op index -> the ops that produce its inputs
        upstream = {op.index: [producers[i] for i in op.inputs if i >= 0 and i in producers] for op in info.ops}
        ops = _quantization_stage(info, finfo, matches, ref, flt, n, upstream)
        _keras_stages(ops, info, keras_per_op, flt, matches, ref, n, upstream)
        qculprit = _int8_culprit(ops, threshold_rel, jump_factor, threshold_steps, bool(keras_per_op), upstream)

        bisections = {}
        if devices:
            def one(item):
                name, dev = item
                return name, _Bisector(name, dev, int8_path, info, xq, ref, ops, n, tmp, threshold_steps,
                                       threshold_rel, timeout_s, flt, matches).bisect()
            with ThreadPoolExecutor(max_workers=min(2, len(devices))) as pool:
                bisections = dict(pool.map(one, devices.items()))

    culprit = _name_culprit(ops, qculprit, bisections)
    _verdicts(ops, qculprit, bisections, threshold_rel, threshold_steps)
    if finfo is None:
        notes.append("no float model: the quantization stage is not traced")
    unmatched = [o.index for o in ops if o.float_tensor is None]
    if finfo is not None and unmatched:
        notes.append(f"{len(unmatched)} op(s) have no float counterpart by layer name: {unmatched[:20]}")
    result = TraceResult(str(float_path) if float_path else None, str(int8_path), n,
                         {"threshold_steps": threshold_steps, "threshold_rel": threshold_rel,
                          "jump_factor": jump_factor},
                         ops, culprit, qculprit, bisections, notes, reference=reference,
                         keras_stage=bool(keras_per_op))
    result.seconds = round(time.perf_counter() - t_start, 3)
    if write:
        from qat_harness.trace import output
        result.files = output.write_all(result, out_dir)
        result.seconds = round(time.perf_counter() - t_start, 3)
        output.write_json(result, out_dir)  # with the files and the final time
    return result


def _quantization_stage(info, finfo, matches, ref, flt, n, upstream: dict[int, list[int]]) -> list[OpTrace]:
    ops: list[OpTrace] = []
    for op in info.ops:
        t = next((o for o in op.outputs if o >= 0), None)
        ti = info.tensor(t)
        names = graph.layer_names(ti.name)
        rec = OpTrace(op.index, op.opcode, t, ti.name, names[0] if names else ti.name, names,
                      list(ti.shape), ti.dtype, ti.scales[0] if ti.scales else None,
                      ti.zero_points[0] if ti.zero_points else None)
        ft = matches.get(t)
        if finfo is not None and ft is not None and t in ref:
            fvalue = flt.get(ft)
            if fvalue is not None:
                rec.float_tensor = finfo.tensor(ft).name
                rec.quant = quant_error(ref[t], fvalue, ti, n)
        rec.carried_rel = _carried(ops, upstream[op.index], "quant", "carried_rel")
        ops.append(rec)
    return ops


def _carried(ops: list[OpTrace], producer_ops: list[int], measure: str, carried_attr: str) -> float:
    """The largest relative error of ``measure`` that the op's inputs bring; a producer without
    the measure passes on what it carried itself."""
    values = []
    for k in producer_ops:
        m = getattr(ops[k], measure)
        values.append(m.get("rel", 0.0) if m and "rel" in m else getattr(ops[k], carried_attr))
    return float(max(values)) if values else 0.0


def _keras_stages(ops: list[OpTrace], info, keras_per_op: dict[int, np.ndarray], flt, matches, ref, n,
                  upstream: dict[int, list[int]]) -> None:
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
                rec.keras_qat = quant_error(value, flt[ft], ti, n)
            if rec.tensor in ref:
                rec.conversion = quant_error(ref[rec.tensor], value, ti, n)
        rec.carried_keras_rel = _carried(ops, upstream[op.index], "keras_qat", "carried_keras_rel")
        rec.carried_conversion_rel = _carried(ops, upstream[op.index], "conversion", "carried_conversion_rel")


def _appears_here(m: dict | None, carried: float, threshold_rel: float, jump_factor: float,
                  threshold_steps: float, steps_key: str) -> bool:
    """The error of measure ``m`` is above the threshold, not mere rounding of small values
    (``steps_key`` steps above ``threshold_steps``), and was not inherited from the inputs."""
    if not m or m.get("rel") is None or m["rel"] <= threshold_rel:
        return False
    steps = m.get(steps_key)
    if steps is not None and steps <= threshold_steps:
        return False
    return m["rel"] > jump_factor * carried


def _int8_culprit(ops: list[OpTrace], threshold_rel: float, jump_factor: float, threshold_steps: float,
                  keras_stage: bool, upstream: dict[int, list[int]] | None = None) -> dict | None:
    """The first op where the int8 file parts ways with float, and the stage it belongs to.
    ``upstream``: op index -> the ops that produce its inputs (for blaming a clipping op)."""
    for o in ops:
        if keras_stage and (o.keras_qat or o.conversion):
            if _appears_here(o.keras_qat, o.carried_keras_rel, threshold_rel, jump_factor, threshold_steps,
                             "mean_bulk_steps"):
                record = _quantization_record(o, o.keras_qat, o.carried_keras_rel,
                                              "the QAT Keras model (fake quantization)")
                return _blame_clipping(record, ops, upstream or {}, "keras_qat")
            # the fake-quant grid is the int8 grid: steps of the tensor's own scale
            if _appears_here(o.conversion, o.carried_conversion_rel, threshold_rel, jump_factor, threshold_steps,
                             "mean_steps"):
                c = o.conversion
                return {"op": o.index, "opcode": o.opcode, "layer": o.layer, "stage": "conversion",
                        "tensor": o.tensor_name, "rel": c["rel"], "carried_rel": o.carried_conversion_rel,
                        "reason": f"the int8 file on the reference kernels differs from the QAT Keras model by "
                                  f"{c['rel']:.1%} (mean {c.get('mean_steps', float('nan')):.1f}, max "
                                  f"{c.get('max_steps', float('nan')):.1f} step(s) of its scale {o.scale:.3g}) "
                                  f"while its inputs carried {o.carried_conversion_rel:.1%} and the QAT Keras "
                                  f"model is within {(o.keras_qat or {}).get('rel', float('nan')):.1%} of float: "
                                  "the converter changed this op"}
            continue
        if _appears_here(o.quant, o.carried_rel, threshold_rel, jump_factor, threshold_steps, "mean_bulk_steps"):
            record = _blame_clipping(_quantization_record(o, o.quant, o.carried_rel, "int8 on the reference kernels"),
                                     ops, upstream or {}, "quant")
            if keras_stage:
                record["reason"] += ("; this op has no QAT Keras value, so quantization and conversion "
                                     "are not told apart here")
            return record
    return None


def _blame_clipping(record: dict, ops: list[OpTrace], upstream: dict[int, list[int]], measure: str) -> dict:
    """When an op upstream of the culprit clips float values its range cannot hold (by more than
    ``TRACE_CLIP_BLAME_STEPS`` steps), the error appeared there: a few clipped values are outside the
    bulk its own measure looks at, and show in the bulk of the next layers. The nearest such
    op is named instead, with the op where the error became visible."""
    seen, frontier = set(), list(upstream.get(record["op"], []))
    while frontier:
        nxt = []
        for k in frontier:
            if k in seen:
                continue
            seen.add(k)
            m = getattr(ops[k], measure) or {}
            if m.get("clip_max_steps", 0.0) > TRACE_CLIP_BLAME_STEPS:
                o, lo, hi = ops[k], *m["representable"]
                return {"op": k, "opcode": o.opcode, "layer": o.layer, "stage": "quantization",
                        "tensor": o.tensor_name, "rel": m.get("rel"), "carried_rel": record["carried_rel"],
                        "visible_at": record["op"],
                        "reason": f"its int8 range [{lo:.3g}, {hi:.3g}] clips float values by up to "
                                  f"{m['clip_max_steps']:.0f} step(s) of its scale ({m['clipped_fraction']:.2%} "
                                  f"of them, float max |x| {m.get('float_absmax', float('nan')):.3g}); the error "
                                  f"shows in the bulk at op {record['op']} ({record['layer']}): {record['reason']}"}
            nxt.extend(upstream.get(k, []))
        frontier = nxt
    return record


def _quantization_record(o: OpTrace, m: dict, carried: float, what: str) -> dict:
    why = (f"{what} differs from float by {m['rel']:.1%} of the values' mean "
           f"magnitude (mean {m.get('mean_steps', float('nan')):.2f}, max "
           f"{m.get('max_steps', float('nan')):.1f} step(s) of its scale {o.scale or float('nan'):.3g}; mean "
           f"{m.get('mean_bulk_steps') or float('nan'):.1f} step(s) of the scale its values' bulk "
           f"needs, {m.get('bulk_scale') or float('nan'):.3g}) while its "
           f"inputs carried {carried:.1%}")
    if m.get("outlier_ratio", 0) > 20:
        why += (f"; its float range is dominated by outliers (max |x| is {m['outlier_ratio']:.0f}x "
                "the 99th percentile), so the int8 scale crushes the other values")
    return {"op": o.index, "opcode": o.opcode, "layer": o.layer, "stage": "quantization",
            "tensor": o.tensor_name, "rel": m["rel"], "carried_rel": carried, "reason": why}


def _name_culprit(ops, qculprit, bisections) -> dict | None:
    candidates = []
    if qculprit:
        candidates.append((qculprit["op"], 0, qculprit))
    for name, b in bisections.items():
        k = b.get("first_departing_op")
        if b.get("status") in ("departs", "interval") and k is not None:
            o = ops[k]
            rec = o.devices.get(name, {})
            candidates.append((k, 1, {"op": k, "opcode": o.opcode, "layer": o.layer, "stage": "device",
                                      "device": name, "tensor": o.tensor_name,
                                      "max_steps": rec.get("max_steps"), "reason": f"{name}: {b['reason']}"}))
    if not candidates:
        return None
    def order(c):
        # at the same op, the reference kernels and a device both depart: the device is named
        # when it is the closer of the two to float (the reference kernels are then the odd one)
        k, kind, rec = c
        if kind == 1 and qculprit and qculprit["op"] == k:
            dev_rel = ops[k].devices.get(rec["device"], {}).get("rel_vs_float")
            if dev_rel is not None and dev_rel < qculprit["rel"] / 2:
                return (k, -1)
        return (k, kind)

    candidates.sort(key=order)
    first = dict(candidates[0][2])
    if first["stage"] == "device" and qculprit and qculprit["op"] == first["op"]:
        dev_rel = ops[first["op"]].devices.get(first["device"], {}).get("rel_vs_float")
        first["reason"] += (f"; the reference kernels also depart from float there ({qculprit['rel']:.1%}) "
                            f"while {first['device']} is within {dev_rel:.1%} of float: the reference "
                            "kernels are the odd one out")
    if len(candidates) > 1:
        first["also"] = [c[2] for c in candidates[1:]]
    return first


def _verdicts(ops, qculprit, bisections, threshold_rel, threshold_steps) -> None:
    for o in ops:
        rel = (o.quant or {}).get("rel")
        conv = o.conversion or {}
        if qculprit and o.index == qculprit["op"]:
            o.verdict = "FAIL"
            o.notes.append(f"{qculprit['stage']} culprit: the error appears here")
        elif rel is not None and rel > threshold_rel:
            o.verdict = "WARN"
            o.notes.append(f"int8 vs float {rel:.1%}, carried from upstream ({o.carried_rel:.1%})")
        elif conv.get("rel", 0.0) > threshold_rel and conv.get("mean_steps", 0.0) > threshold_steps:
            o.verdict = "WARN"
            o.notes.append(f"int8 vs QAT Keras {conv['rel']:.1%}, carried from upstream "
                           f"({o.carried_conversion_rel:.1%})")
        for name, b in bisections.items():
            rec = o.devices.get(name)
            if not rec:
                continue
            if b.get("first_departing_op") == o.index:
                o.verdict = "FAIL"
                o.notes.append(f"{name}: first op that departs from the reference kernels")
            elif rec.get("departs") and o.verdict == "PASS":
                o.verdict = "WARN"
                o.notes.append(f"{name}: departs, carried from upstream")
