"""Glue between the trace and the rest of the harness, so that wiring it in is a few lines:

- ``add_parser(sub)`` / ``cmd_trace(args, devices)``: ``qat-harness trace --models M
  --devices D --out DIR`` (M: any model form ``run`` accepts, prepared the same way);
- ``trace_prepared``: the trace of one prepared model (``preparation.PreparedModel``) on some
  devices, into ``out/<model>/``; what the command and the automatic trace of a run both call;
- ``needs_trace`` / ``TRACE_CLAIMS``: which claim verdicts of a run call for a trace;
- ``trace_cell``: the trace of a layer-matrix probe's int8 model (no float .tflite there: the
  device stages only) for a numeric WARN/FAIL cell, and ``cell_link`` for its entry.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qat_harness.claims import Agreement
from qat_harness.claims.tolerances import TRACE_DEPARTURE_REL, TRACE_DEPARTURE_STEPS
from qat_harness.trace.core import TraceResult, run_trace

#: Claims whose WARN/FAIL, for a model x device, calls for an automatic trace.
TRACE_CLAIMS = (Agreement.id,)
TRACE_VERDICTS = ("WARN", "FAIL")
DEFAULT_EXAMPLES = 8




def add_parser(sub) -> argparse.ArgumentParser:
    """The ``trace`` sub-command's parser; the caller adds the device options."""
    tr = sub.add_parser("trace", help="per-layer trace: where int8 parts ways with float, and a device "
                                      "with the reference kernels")
    tr.add_argument("--models", type=lambda v: [s.strip() for s in v.split(",") if s.strip()], required=True,
                    help="comma-separated, any form 'run' accepts")
    tr.add_argument("--devices", type=lambda v: [s.strip() for s in v.split(",") if s.strip()], default=["cpu"])
    tr.add_argument("--out", type=Path, default=None)
    tr.add_argument("--input-size", type=int, default=None)
    tr.add_argument("--dataset", default=None)
    tr.add_argument("--variant", choices=("qat_int8", "ptq_int8", "int8"), default=None,
                    help="the int8 model traced (default: the one a run judges; ptq_int8 isolates "
                         "quantization from QAT fine-tuning)")
    tr.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="inputs traced (default 8)")
    tr.add_argument("--threshold-steps", type=float, default=TRACE_DEPARTURE_STEPS,
                    help="int8 steps a device may differ from the reference kernels "
                         f"(default {TRACE_DEPARTURE_STEPS:g})")
    tr.add_argument("--threshold-rel", type=float, default=TRACE_DEPARTURE_REL,
                    help="relative error int8 vs float that counts as a departure "
                         f"(default {TRACE_DEPARTURE_REL:g})")
    return tr


def trace_prepared(prepared, devices: dict, out_dir: Path, n_examples: int = DEFAULT_EXAMPLES,
                   variant: str | None = None, **thresholds) -> TraceResult:
    """Trace one ``PreparedModel``: its int8 variant under test (or ``variant``) against its
    float variant when it has one, and against its QAT Keras model when the build kept it, on
    the first ``n_examples`` evaluation inputs."""
    variant = variant or prepared.under_test
    int8_path = prepared.variants.get(variant)
    if int8_path is None:
        raise ValueError(f"{prepared.label} has no {variant} variant ({', '.join(prepared.variants)})")
    x = prepared.data.x_eval
    x = [np.asarray(v[:n_examples]) for v in x] if isinstance(x, list) else np.asarray(x[:n_examples])
    # the QAT Keras model is the twin of the QAT int8 file only
    qat_keras = prepared.qat_keras if variant == "qat_int8" else None
    return run_trace(prepared.variants.get("float"), int8_path, x, devices, Path(out_dir),
                     input_names=prepared.input_names, qat_keras=qat_keras, **thresholds)


def cmd_trace(args, devices: dict, progress=print) -> int:
    """``devices``: the opened devices (name -> Device), every one available; closed here."""
    from qat_harness.build.cache import ArtifactCache
    from qat_harness.preparation import DataOptions, prepare
    from qat_harness.record.folder import safe_name
    from qat_harness.sources import parse_models

    out = args.out or Path("reports") / "trace"
    worst = 0
    try:
        for source in parse_models(args.models):
            progress(f"{source.label}: preparing")
            prepared = prepare(source, DataOptions(dataset=args.dataset), ArtifactCache(),
                               out / "work" / safe_name(source.label), progress, args.input_size)
            result = trace_prepared(prepared, devices, out / safe_name(source.label), args.examples,
                                    args.variant, threshold_steps=args.threshold_steps,
                                    threshold_rel=args.threshold_rel)
            c = result.culprit
            progress(f"{source.label}: " + (f"culprit op {c['op']} {c['opcode']} (layer {c['layer']}), stage "
                                            f"{c['stage']}{' on ' + c['device'] if c.get('device') else ''}"
                                            if c else "no culprit")
                     + f" — {result.files.get('markdown')} ({result.seconds:.1f} s)")
            worst = max(worst, 1 if c else 0)
    finally:
        for dev in devices.values():
            dev.close()
    return worst


def needs_trace(claims: list, model: str, device: str) -> bool:
    """True when a claim of ``TRACE_CLAIMS`` for this model and device is WARN or FAIL
    (``claims``: ClaimResult objects or their dicts)."""
    for c in claims:
        d = c if isinstance(c, dict) else c.to_dict()
        verdict = d["verdict"].value if hasattr(d["verdict"], "value") else str(d["verdict"])
        if d["id"] in TRACE_CLAIMS and d["model"] == model and d["device"] == device and verdict in TRACE_VERDICTS:
            return True
    return False


def trace_cell(model_path: Path, xq_or_x: np.ndarray, device_name: str, device, out_dir: Path,
               **thresholds) -> TraceResult:
    """A layer-matrix probe's numeric WARN/FAIL cell: its int8 model bisected on the device
    against the reference kernels (``xq_or_x``: the probe's float inputs)."""
    return run_trace(None, model_path, xq_or_x, {device_name: device}, Path(out_dir), **thresholds)


def cell_link(entry_stages: dict, device_name: str, result: TraceResult, matrix_dir: Path) -> None:
    """Put the trace's place and culprit on the cell ``<device>:numeric`` of a probe entry."""
    cell = entry_stages.get(f"{device_name}:numeric")
    if cell is None:
        return
    md = Path(result.files.get("markdown", ""))
    try:
        rel = md.relative_to(matrix_dir)
    except ValueError:
        rel = md
    cell["trace"] = str(rel)
    c = result.culprit
    cell["trace_culprit"] = (f"op {c['op']} {c['opcode']} ({c['layer']}), {c['stage']}" if c else "none")
