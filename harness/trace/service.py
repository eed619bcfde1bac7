"""The trace as the rest of the harness calls it (the run, the layer matrix, the CLI):

- ``needs_trace``: whether a run's claim verdicts for a model x device call for a trace;
- ``trace_prepared``: the trace of one prepared model (``preparation.PreparedModel``) on some
  devices, into one folder; what ``qat-harness trace`` and the automatic trace of a run call;
- ``trace_cell``: the trace of a layer-matrix probe's int8 model (no float .tflite there: the
  device stages only) for a numeric WARN/FAIL cell.

Each returns the typed ``TraceResult``; ``result.summary()`` is what a run's report keeps."""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qat_harness.claims import Agreement
from qat_harness.core.errors import DeviceError
from qat_harness.devices.base import Device, ModelInputs, input_list
from qat_harness.results import ClaimResult, Verdict
from qat_harness.trace import output
from qat_harness.trace.core import DEFAULT_THRESHOLDS, run_trace
from qat_harness.trace.results import Thresholds, TraceResult
from qat_harness.trace.traceable import traceable
from qat_harness.variants import Variant

if TYPE_CHECKING:
    from qat_harness.build.artifacts import QatKerasModel
    from qat_harness.preparation import PreparedModel

#: Claims whose WARN/FAIL, for a model x device, calls for an automatic trace.
TRACE_CLAIMS = (Agreement.id,)
TRACE_VERDICTS = (Verdict.WARN, Verdict.FAIL)
DEFAULT_EXAMPLES = 8
#: The int8 variants a trace can follow.
TRACEABLE = (Variant.QAT_INT8, Variant.PTQ_INT8, Variant.INT8)


def needs_trace(claims: Iterable[ClaimResult], model: str, device: str) -> bool:
    """True when a claim of ``TRACE_CLAIMS`` for this model and device is WARN or FAIL."""
    return any(c.id in TRACE_CLAIMS and c.model == model and c.device == device and c.verdict in TRACE_VERDICTS
               for c in claims)


def _first(x: ModelInputs, n: int) -> ModelInputs:
    return [np.asarray(v[:n]) for v in x] if isinstance(x, list) else np.asarray(x[:n])


def trace_prepared(prepared: PreparedModel, devices: Mapping[str, Device], out_dir: Path,
                   n_examples: int = DEFAULT_EXAMPLES, variant: Variant | str | None = None,
                   thresholds: Thresholds = DEFAULT_THRESHOLDS) -> TraceResult:
    """Trace one ``PreparedModel``: its int8 variant under test (or ``variant``) against its
    float variant when it has one, and against its QAT Keras model when the build kept it, on
    the first ``n_examples`` evaluation inputs."""
    traced = Variant(variant or prepared.under_test)
    int8_path = prepared.variants.get(traced)
    if int8_path is None:
        raise ValueError(f"{prepared.label} has no {traced} variant ({', '.join(prepared.variants)})")
    # the QAT Keras model is the twin of the QAT int8 file only
    qat_keras = prepared.qat_keras if traced is Variant.QAT_INT8 else None
    return trace_model(prepared.variants.get(Variant.FLOAT), int8_path, _first(prepared.data.x_eval, n_examples),
                       devices, Path(out_dir), thresholds, input_names=prepared.input_names, qat_keras=qat_keras)


def trace_cell(model_path: Path, x: ModelInputs, device_name: str, device: Device, out_dir: Path,
               thresholds: Thresholds = DEFAULT_THRESHOLDS) -> TraceResult:
    """A layer-matrix probe's numeric WARN/FAIL cell: its int8 model bisected on the device
    against the reference kernels (``x``: the probe's float inputs)."""
    return trace_model(None, model_path, x, {device_name: device}, Path(out_dir), thresholds)


def trace_model(float_path: Path | None, int8_path: Path, x: ModelInputs, devices: Mapping[str, Device],
                out_dir: Path, thresholds: Thresholds = DEFAULT_THRESHOLDS, input_names: list[str] | None = None,
                qat_keras: QatKerasModel | None = None) -> TraceResult:
    """``run_trace`` on what of the model the host can follow (``traceable``): a compiled Edge
    TPU subgraph, a custom op the host lacks and a stateful model's resource ops are skipped,
    and a child that crashes on what is left ends the trace with what it skipped; the report is
    always written and names, a line each, what was not traced."""
    out_dir = Path(out_dir)
    try:
        t = traceable(Path(int8_path), Path(float_path) if float_path else None, x, input_names,
                      out_dir / "traced")
    except DeviceError as exc:   # the run that records a stateful model's state failed
        return _nothing_traced(float_path, int8_path, x, out_dir, thresholds,
                               [f"the whole model: recording its state failed ({exc.kind}: {_one_line(exc)})"])
    if t.int8_path is None:
        return _nothing_traced(float_path, int8_path, x, out_dir, thresholds, t.skipped)
    whole = Path(t.int8_path) == Path(int8_path)
    try:
        result = run_trace(t.float_path, t.int8_path, t.inputs, devices, out_dir, thresholds,
                           input_names=t.input_names, qat_keras=qat_keras if whole else None)
    except DeviceError as exc:   # LiteRT failed or crashed on the model in a child: said, never raised
        return _nothing_traced(float_path, int8_path, x, out_dir, thresholds,
                               [*t.skipped, f"the whole model: LiteRT could not run it to trace it "
                                            f"({exc.kind}: {_one_line(exc)})"])
    if t.skipped:
        result.skipped = t.skipped
        result.files.markdown = output.write_markdown(result, out_dir)
        output.write_json(result, out_dir)
    return result


def _one_line(exc: DeviceError) -> str:
    return " ".join(exc.reason.split())[:200]


def _nothing_traced(float_path: Path | None, int8_path: Path, x: ModelInputs, out_dir: Path,
                    thresholds: Thresholds, skipped: list[str]) -> TraceResult:
    """The report of a trace that could follow no op: what was skipped and why."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = TraceResult(str(float_path) if float_path else None, str(int8_path), len(input_list(x)[0]), thresholds,
                         [], None, None, {}, [], skipped=list(skipped))
    result.files = output.write_all(result, out_dir)
    result.seconds = round(time.perf_counter() - started, 3)
    output.write_json(result, out_dir)
    return result

