"""The verdict of each stage of a layer-matrix cell (keys of ``stages`` in layers.json), and
what is read back from the cells: which probe stage blocks the rest, the first failure, the
ERROR cells that make ``qat-harness layers`` exit non-zero, agreement with tfmot's
documentation. The numbers that judge the numeric stage are claim M2's
(``claims.AllowListedLayers``); every distance between two outputs is
``measure.difference.output_difference``'s."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from qat_harness import inspection
from qat_harness.claims import AllowListedLayers
from qat_harness.core.errors import DeviceError
from qat_harness.core.tflite import ModelInfo, TensorInfo, quantize_input
from qat_harness.devices.base import Delegation, Role
from qat_harness.layers.cells import BnFoldDetails, Int8Details, NumericDetails, StageCell, StepDistance, cell
from qat_harness.layers.protocol import Documentation
from qat_harness.layers.tree import DocumentationMatch, MatrixReport, as_matrix
from qat_harness.measure.difference import output_difference
from qat_harness.results import Verdict

PASS, WARN, FAIL, SKIP, ERROR = Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP, Verdict.ERROR


# -- stages in the parent -----------------------------------------------------------------------
def int8_stage(info: ModelInfo) -> StageCell:
    check = inspection.full_integer_check(info, require_int8_io=True)
    ops = info.op_counts()
    if check.ok:
        return cell(PASS, f"{check.reason}; ops: {_ops_text(ops)}", Int8Details(ops))
    fallbacks = sorted(set(check.float_ops))
    reason = check.reason + (f" (float fallback: {', '.join(fallbacks)})" if fallbacks else "")
    return cell(FAIL, f"{reason}; ops: {_ops_text(ops)}",
                Int8Details(ops, list(check.float_ops), check.dequantize_ops))


def _ops_text(ops: Mapping[str, int]) -> str:
    return ", ".join(f"{k}x{v}" if v > 1 else k for k, v in ops.items())


def bn_fold_stage(info: ModelInfo) -> StageCell:
    check = inspection.batchnorm_fold_check(info)
    if check.ok:
        return cell(PASS, f"BatchNorm folded: {check.reason}")
    return cell(FAIL, f"BatchNorm not folded: {check.reason}", BnFoldDetails(list(check.unfolded_after)))


def device_error_verdict(exc: DeviceError) -> Verdict:
    # A crash, a hang or a lost device is an ERROR; a runtime that refuses the model FAILs it.
    return ERROR if exc.kind in ("crash", "timeout", "offline", "missing-tool", "disk-full") else FAIL


def delegated_stage(role: Role, deleg: Delegation | None) -> StageCell:
    if deleg is None:
        if role is Role.ORACLE:
            return cell(SKIP, "reference kernels: no delegate by design")
        return cell(SKIP, "the adapter did not report how the graph was delegated")
    frac, backend = deleg.fraction, deleg.backend
    left = [name for name, _why in deleg.fallback] or deleg.details.get("cpu_builtin_ops", [])
    if frac is None:
        return cell(SKIP, f"{backend}: delegation not measurable", deleg)
    text = f"{deleg.ops_delegated}/{deleg.ops_total} ops on {backend}"
    if frac >= 1.0:
        return cell(PASS, f"{text} (whole graph)")
    kept = ", ".join(sorted(set(left))) if left else "unknown ops"
    if frac <= 0.0:
        verdict = FAIL if role is Role.ACCELERATOR else WARN
        return cell(verdict, f"{text}: {backend} took none of the graph; on the CPU: {kept}")
    return cell(WARN, f"{text}; left on the CPU: {kept}")


def _by_steps(max_steps: int, pass_steps: int, warn_steps: int) -> Verdict:
    return PASS if max_steps <= pass_steps else WARN if max_steps <= warn_steps else FAIL


def numeric_stage(role: Role, out: np.ndarray, oracle: np.ndarray | None, oracle_note: str,
                  keras_out: np.ndarray, out_tensor: TensorInfo) -> StageCell:
    """int8 device outputs against the reference kernels and against the QAT Keras model."""
    th = AllowListedLayers
    if out_tensor.dtype != "int8" or not out_tensor.scales or not out_tensor.zero_points:
        return cell(SKIP, f"output tensor is {out_tensor.dtype}, not int8: no int8 steps to compare")
    scale, zp = out_tensor.scales[0], out_tensor.zero_points[0]
    q = out.astype(np.int32)
    verdicts: list[Verdict] = []
    parts: list[str] = []
    vs_reference = vs_keras = reference_vs_keras = None
    if role is not Role.ORACLE:
        if oracle is None:
            parts.append(f"no reference-kernel output ({oracle_note})")
        elif oracle.shape != q.shape:
            verdicts.append(FAIL)
            parts.append(f"output shape {list(q.shape)} differs from the reference {list(oracle.shape)}")
        else:
            vs_reference = StepDistance.of(output_difference(q, oracle.astype(np.int32), out_tensor))
            verdicts.append(_by_steps(vs_reference.max_steps, th.ORACLE_PASS_STEPS, th.ORACLE_WARN_STEPS))
            parts.append(f"vs reference kernels: max {vs_reference.max_steps} step(s)")
    if keras_out.size != q.size:
        verdicts.append(FAIL)
        parts.append(f"output has {q.size} values, the QAT Keras model {keras_out.size}")
    else:
        kq = quantize_input(keras_out.reshape(q.shape), scale, zp).astype(np.int32)
        to_keras = output_difference(q, kq, out_tensor)
        mean = to_keras.mean_steps or 0.0
        within_1 = float(np.mean(np.abs(q - kq) <= 1)) if q.size else 1.0
        vs_keras = StepDistance.of(to_keras, within_1_step=within_1)
        verdicts.append(_by_steps(vs_keras.max_steps, th.KERAS_PASS_STEPS, th.KERAS_WARN_STEPS))
        parts.append(f"vs QAT Keras: max {vs_keras.max_steps}, mean {mean:.2f} step(s)")
        if vs_reference is not None and oracle is not None and vs_reference.max_steps > th.ORACLE_PASS_STEPS:
            # Which of the two int8 kernels is off? The QAT Keras model arbitrates: when the
            # reference kernels are further from it than this device, the reference is the
            # outlier (e.g. its fixed-point LOGISTIC/TANH against XNNPACK's exact tables).
            reference = output_difference(oracle.astype(np.int32).reshape(q.shape), kq, out_tensor)
            reference_vs_keras = StepDistance.of(reference)
            reference_mean = reference.mean_steps or 0.0
            if reference_mean > mean and verdicts[0] is FAIL:
                verdicts[0] = WARN
                parts[0] += (f", but the reference kernels are the further from QAT Keras "
                             f"(max {reference_vs_keras.max_steps}, mean {reference_mean:.2f} step(s))")
    verdict = Verdict.worst(verdicts) if verdicts else SKIP
    return cell(verdict, "; ".join(parts) + f" (output scale {scale:.3g})",
                NumericDetails(scale, zp, vs_reference, vs_keras, reference_vs_keras))


def error_cells(matrix: MatrixReport | Mapping[str, Any]) -> list[str]:
    """'probe stage' for every ERROR cell (a crash, a hang, a broken probe): what makes the
    ``layers`` command exit non-zero. ``matrix``: the typed matrix or a layers.json's content."""
    return [f"{p.name} {key}" for p in as_matrix(matrix).probes for key, c in p.all_cells() if c.verdict is ERROR]


def blocking(stages: Mapping[str, StageCell]) -> str | None:
    """The first of ``qat`` and ``convert`` that did not go through (the rest cannot run)."""
    for key in ("qat", "convert"):
        c = stages.get(key)
        if c is None or c.verdict not in (PASS, WARN):
            return key
    return None


def first_failure(stages: Mapping[str, StageCell], keys: Iterable[str]) -> str | None:
    for key in keys:
        c = stages.get(key)
        if c is not None and c.verdict in (FAIL, ERROR):
            return key
    return None


# -- documentation ------------------------------------------------------------------------------
def compare_with_documentation(doc: Documentation | None, stages: Mapping[str, StageCell]) -> DocumentationMatch:
    """Does the measurement agree with what tfmot documents? ``agrees`` is None when the two
    cannot be compared (no documentation, or the stage errored)."""
    qat_cell = stages.get("qat")
    qat = qat_cell.verdict if qat_cell is not None else None
    qat_text = f"{qat.value}: {qat_cell.reason}" if qat_cell is not None and qat is not None else "not run"
    if doc is None or doc.status == "unknown":
        return DocumentationMatch(None, "no documentation read for this probe")
    status, summary = doc.status, doc.summary or ""
    if qat is ERROR:
        return DocumentationMatch(None, f"documented '{status}'; not comparable: {qat_cell.reason if qat_cell else ''}")
    if doc.predicted_qat == "FAIL":
        if qat is FAIL:
            return DocumentationMatch(True, f"documented '{status}' ({summary}); QAT refuses it, as documented")
        return DocumentationMatch(False, f"DIFFERS: documented '{status}' ({summary}), yet QAT went "
                                         f"through ({qat_text})")
    if qat is FAIL and qat_cell is not None:
        return DocumentationMatch(False, f"DIFFERS: documented '{status}', but QAT refused it: {qat_cell.reason}")
    later = [(k, c) for k, c in stages.items() if k != "qat" and c.verdict in (FAIL, ERROR)]
    if later:
        k, c = later[0]
        return DocumentationMatch(False, f"DIFFERS: documented '{status}' (the QAT guide: allow-listed layers "
                                         f"are supported), but {k} is {c.verdict.value}: {c.reason}")
    note = f"documented '{status}'; QAT and every later stage that ran work"
    if status != "supported":
        note += f" (caveat: {summary})"
    return DocumentationMatch(True, note)
