"""The trace as the rest of the harness calls it (the run, the layer matrix, the CLI):

- ``needs_trace``: whether a run's claim verdicts for a model x device call for a trace;
- ``trace_prepared``: the trace of one prepared model (``preparation.PreparedModel``) on some
  devices, into one folder; what ``qat-harness trace`` and the automatic trace of a run call;
- ``trace_cell``: the trace of a layer-matrix probe's int8 model (no float .tflite there: the
  device stages only) for a numeric WARN/FAIL cell.

Each returns the typed ``TraceResult``; ``result.summary()`` is what a run's report keeps."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qat_harness.claims import Agreement
from qat_harness.devices.base import Device, ModelInputs
from qat_harness.results import ClaimResult, Verdict
from qat_harness.trace.core import DEFAULT_THRESHOLDS, run_trace
from qat_harness.trace.results import Thresholds, TraceResult
from qat_harness.variants import Variant

if TYPE_CHECKING:
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
    return run_trace(prepared.variants.get(Variant.FLOAT), int8_path, _first(prepared.data.x_eval, n_examples),
                     devices, Path(out_dir), thresholds, input_names=prepared.input_names, qat_keras=qat_keras)


def trace_cell(model_path: Path, x: ModelInputs, device_name: str, device: Device, out_dir: Path,
               thresholds: Thresholds = DEFAULT_THRESHOLDS) -> TraceResult:
    """A layer-matrix probe's numeric WARN/FAIL cell: its int8 model bisected on the device
    against the reference kernels (``x``: the probe's float inputs)."""
    return run_trace(None, model_path, x, {device_name: device}, Path(out_dir), thresholds)

