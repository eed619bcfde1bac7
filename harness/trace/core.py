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
  there and running the cut model through the device's ordinary ``run`` (``bisect``);
  compared with the reference kernels in the tensor's own domain: what arrives (cumulative);
  and the op run alone on the reference kernels' values of its inputs: what it adds (local,
  ``local``), which decides the device culprit. A device culprit gets a minimal repro
  (``repro``) in the trace folder.

Without the QAT Keras model (a .tflite given as it is, a layer-matrix cell) the reference
kernels' error against float stands for quantization and conversion together, and the trace
says so in its notes. Which op is blamed, and why, is ``culprit``'s. The modules, in the order
a trace runs: ``capture`` (every stage's values, in children), ``stages`` (each op's measures,
``measures``), ``bisect`` (the devices), ``culprit`` (the culprit and the verdicts), ``output``
(the files); ``results`` holds the types handed between them.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from qat_harness.core import tflite
from qat_harness.devices.base import Device, ModelInputs, input_list
from qat_harness.trace import graph, output
from qat_harness.trace.bisect import Bisector, TracedModel
from qat_harness.trace.capture import FloatTwin, capture
from qat_harness.trace.culprit import int8_culprit, name_culprit, set_verdicts
from qat_harness.trace.local import Attribution, attribute, local_rule, measure_around
from qat_harness.trace.measures import computes_in_float
from qat_harness.trace.repro import replay_command, write_repro
from qat_harness.trace.results import Bisection, OpTrace, Stage, Thresholds, TraceResult
from qat_harness.trace.stages import keras_stages, quantization_stage, upstream_ops

if TYPE_CHECKING:
    from qat_harness.build.artifacts import QatKerasModel

__all__ = ["DEFAULT_THRESHOLDS", "OpTrace", "TraceResult", "run_trace"]

DEFAULT_THRESHOLDS = Thresholds()


def run_trace(float_path: Path | str | None, int8_path: Path | str, inputs: ModelInputs,
              devices: Mapping[str, Device], out_dir: Path, thresholds: Thresholds = DEFAULT_THRESHOLDS,
              timeout_s: float = 600.0, write: bool = True, input_names: list[str] | None = None,
              qat_keras: QatKerasModel | None = None) -> TraceResult:
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
    x = input_list(inputs)
    n = len(x[0])
    xq = input_list(tflite.model_inputs(info, x if len(x) > 1 else x[0], input_names))
    twin = None
    if float_path is not None:
        finfo = tflite.inspect_model(float_path)
        twin = FloatTwin(Path(float_path), finfo, graph.match_tensors(info, finfo),
                         input_list(tflite.model_inputs(finfo, x if len(x) > 1 else x[0], input_names)))
    matches = twin.matches if twin else {}

    with tempfile.TemporaryDirectory(prefix="qat-trace-") as tmp_name:
        tmp = Path(tmp_name)
        captured = capture(int8_path, info, xq, x, twin, qat_keras, tmp, timeout_s)
        ref, flt = captured.reference, captured.float_values
        upstream = upstream_ops(info)
        ops = quantization_stage(info, twin.info if twin else None, matches, ref, flt, n, upstream)
        keras_stages(ops, info, captured.keras_per_op, flt, matches, ref, n, upstream)
        qculprit = int8_culprit(ops, thresholds, bool(captured.keras_per_op), upstream)

        bisections: dict[str, Bisection] = {}
        attributions: dict[str, Attribution] = {}
        bisectors: dict[str, Bisector] = {}
        float_model = computes_in_float(info)
        if devices:
            model = TracedModel(int8_path, info, xq, n, ref, flt, matches, tmp, timeout_s, float_model)

            def bisect(item: tuple[str, Device]) -> tuple[str, Bisection]:
                name, dev = item
                bisectors[name] = Bisector(name, dev, model, ops, thresholds)
                found = bisectors[name].bisect()
                measure_around(bisectors[name], found, upstream)
                return name, found

            with ThreadPoolExecutor(max_workers=min(2, len(devices))) as pool:
                bisections = dict(pool.map(bisect, devices.items()))
            for name, b in bisections.items():
                a = attribute(name, b, ops, upstream, thresholds, float_model)
                if a is not None:
                    attributions[name] = a

        culprit = name_culprit(ops, qculprit, bisections, attributions)
        repro = None
        if write and culprit is not None and culprit.stage is Stage.DEVICE and culprit.device in attributions:
            repro = write_repro(bisectors[culprit.device], attributions[culprit.device], out_dir)

    set_verdicts(ops, qculprit, bisections, thresholds, attributions, float_model_given=twin is not None)
    notes = captured.notes
    if twin is None:
        notes.append("no float model: the quantization stage is not traced")
    unmatched = [o.index for o in ops if o.float_tensor is None]
    if twin is not None and unmatched:
        notes.append(f"{len(unmatched)} op(s) have no float counterpart by layer name: {unmatched[:20]}")
    if culprit is not None and culprit.stage is Stage.DEVICE:
        notes.append(f"minimal repro: {repro} — replay: {replay_command(repro, culprit.device or '')}" if repro
                     else "no minimal repro: the departure does not reproduce outside the whole model")
    result = TraceResult(str(float_path) if float_path else None, str(int8_path), n, thresholds, ops, culprit,
                         qculprit, bisections, notes, reference=captured.reference_kernels,
                         keras_stage=bool(captured.keras_per_op), float_model=float_model,
                         local_rule=local_rule(len(ops)), repro=repro)
    result.seconds = round(time.perf_counter() - t_start, 3)
    if write:
        result.files = output.write_all(result, out_dir)
        result.seconds = round(time.perf_counter() - t_start, 3)
        output.write_json(result, out_dir)  # with the files and the final time
    return result
