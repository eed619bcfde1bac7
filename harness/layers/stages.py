"""The verdict of each stage of a layer-matrix cell (keys of ``stages`` in layers.json), and
what is read back from the cells: which probe stage blocks the rest, the first failure, the
ERROR cells that make ``qat-harness layers`` exit non-zero, agreement with tfmot's documentation.
A cell is a dict (``stage``) because it goes into layers.json as it is; the numbers that judge
the numeric stage are claim M2's (``claims.AllowListedLayers``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from qat_harness import inspection
from qat_harness.claims import AllowListedLayers
from qat_harness.core.tflite import quantize_input
from qat_harness.devices.base import Role
from qat_harness.results import Verdict

PASS, WARN, FAIL, SKIP, ERROR = (Verdict.PASS.value, Verdict.WARN.value, Verdict.FAIL.value,
                                 Verdict.SKIP.value, Verdict.ERROR.value)


def stage(verdict: str, reason: str, **details) -> dict:
    cell: dict[str, Any] = {"verdict": verdict, "reason": reason}
    if details:
        cell["details"] = details
    return cell


def worst(verdicts) -> str:
    return Verdict.worst(verdicts).value


# -- stages in the parent -----------------------------------------------------------------------
def int8_stage(info, ti) -> dict:
    check = inspection.full_integer_check(info, require_int8_io=True)
    ops = info.op_counts()
    if check.ok:
        return stage(PASS, f"{check.reason}; ops: {_ops_text(ops)}", ops=ops)
    fallbacks = sorted(set(check.float_ops))
    reason = check.reason + (f" (float fallback: {', '.join(fallbacks)})" if fallbacks else "")
    return stage(FAIL, f"{reason}; ops: {_ops_text(ops)}", ops=ops,
                 float_ops=check.float_ops, dequantize_ops=check.dequantize_ops)


def _ops_text(ops: dict) -> str:
    return ", ".join(f"{k}x{v}" if v > 1 else k for k, v in ops.items())


def bn_fold_stage(info, ti) -> dict:
    check = inspection.batchnorm_fold_check(info)
    if check.ok:
        return stage(PASS, f"BatchNorm folded: {check.reason}")
    return stage(FAIL, f"BatchNorm not folded: {check.reason}",
                 unfolded_after=check.unfolded_after)


def device_error_verdict(exc) -> str:
    # A crash, a hang or a lost device is an ERROR; a runtime that refuses the model FAILs it.
    return ERROR if exc.kind in ("crash", "timeout", "offline", "missing-tool", "disk-full") else FAIL


def delegated_stage(role: Role, deleg) -> dict:
    if deleg is None:
        if role is Role.ORACLE:
            return stage(SKIP, "reference kernels: no delegate by design")
        return stage(SKIP, "the adapter did not report how the graph was delegated")
    frac, backend = deleg.fraction, deleg.backend
    left = [name for name, _why in deleg.fallback] or deleg.details.get("cpu_builtin_ops", [])
    if frac is None:
        return stage(SKIP, f"{backend}: delegation not measurable", **deleg.to_dict())
    text = f"{deleg.ops_delegated}/{deleg.ops_total} ops on {backend}"
    if frac >= 1.0:
        return stage(PASS, f"{text} (whole graph)")
    kept = ", ".join(sorted(set(left))) if left else "unknown ops"
    if frac <= 0.0:
        verdict = FAIL if role is Role.ACCELERATOR else WARN
        return stage(verdict, f"{text}: {backend} took none of the graph; on the CPU: {kept}")
    return stage(WARN, f"{text}; left on the CPU: {kept}")


def numeric_stage(role: Role, out: np.ndarray, oracle: np.ndarray | None, oracle_note: str,
                  keras_out: np.ndarray, out_tensor) -> dict:
    """int8 device outputs against the reference kernels and against the QAT Keras model."""
    th = AllowListedLayers
    if out_tensor.dtype != "int8" or not out_tensor.scales:
        return stage(SKIP, f"output tensor is {out_tensor.dtype}, not int8: no int8 steps to compare")
    scale, zp = out_tensor.scales[0], out_tensor.zero_points[0]
    q = out.astype(np.int32)
    verdicts, parts, details = [], [], {"output_scale": scale, "output_zero_point": zp}
    if role is not Role.ORACLE:
        if oracle is None:
            parts.append(f"no reference-kernel output ({oracle_note})")
        elif oracle.shape != q.shape:
            verdicts.append(FAIL)
            parts.append(f"output shape {list(q.shape)} differs from the reference {list(oracle.shape)}")
        else:
            d = np.abs(q - oracle.astype(np.int32))
            mx = int(d.max()) if d.size else 0
            details["vs_reference"] = {"max_steps": mx, "mean_steps": round(float(d.mean()), 4)}
            verdicts.append(PASS if mx <= th.ORACLE_PASS_STEPS else WARN if mx <= th.ORACLE_WARN_STEPS else FAIL)
            parts.append(f"vs reference kernels: max {mx} step(s)")
    if keras_out.size != q.size:
        verdicts.append(FAIL)
        parts.append(f"output has {q.size} values, the QAT Keras model {keras_out.size}")
    else:
        kq = quantize_input(keras_out.reshape(q.shape), scale, zp).astype(np.int32)
        d = np.abs(q - kq)
        mx, mean = int(d.max()), float(d.mean())
        details["vs_keras"] = {"max_steps": mx, "mean_steps": round(mean, 4),
                               "within_1_step": round(float(np.mean(d <= 1)), 4)}
        verdicts.append(PASS if mx <= th.KERAS_PASS_STEPS else WARN if mx <= th.KERAS_WARN_STEPS else FAIL)
        parts.append(f"vs QAT Keras: max {mx}, mean {mean:.2f} step(s)")
        ref = details.get("vs_reference")
        if ref and oracle is not None and ref["max_steps"] > th.ORACLE_PASS_STEPS:
            # Which of the two int8 kernels is off? The QAT Keras model arbitrates: when the
            # reference kernels are further from it than this device, the reference is the
            # outlier (e.g. its fixed-point LOGISTIC/TANH against XNNPACK's exact tables).
            od = np.abs(oracle.astype(np.int32).reshape(q.shape) - kq)
            details["reference_vs_keras"] = {"max_steps": int(od.max()), "mean_steps": round(float(od.mean()), 4)}
            if float(od.mean()) > mean and verdicts[0] == FAIL:
                verdicts[0] = WARN
                parts[0] += (f", but the reference kernels are the further from QAT Keras "
                             f"(max {int(od.max())}, mean {float(od.mean()):.2f} step(s))")
    verdict = worst(verdicts) if verdicts else SKIP
    return stage(verdict, "; ".join(parts) + f" (output scale {scale:.3g})", **details)


def error_cells(matrix: dict) -> list[str]:
    """'probe stage' for every ERROR cell (a crash, a hang, a broken probe): what makes the
    ``layers`` command exit non-zero."""
    return [f"{p['name']} {key}" for p in matrix.get("probes", []) if p
            for cells in (p.get("stages", {}), p.get("recipe_stages", {}))
            for key, cell in cells.items() if cell.get("verdict") == ERROR]


def blocking(stages: dict) -> str | None:
    for key in ("qat", "convert"):
        cell = stages.get(key)
        if cell is None or cell["verdict"] not in (PASS, WARN):
            return key
    return None


def first_failure(entry: dict, keys: list[str]) -> str | None:
    for key in keys:
        cell = entry["stages"].get(key)
        if cell and cell["verdict"] in (FAIL, ERROR):
            return key
    return None


# -- documentation ------------------------------------------------------------------------------
def compare_with_documentation(entry: dict) -> dict:
    """Does the measurement agree with what tfmot documents? ``agrees`` is None when the two
    cannot be compared (no documentation, or the stage errored)."""
    doc = entry.get("documented")
    stages = entry["stages"]
    qat = stages.get("qat", {}).get("verdict")
    if not doc or doc.get("status") == "unknown":
        return {"agrees": None, "note": "no documentation read for this probe"}
    status = doc["status"]
    predicted = doc.get("predicts", {}).get("qat")
    if qat == ERROR:
        return {"agrees": None, "note": f"documented '{status}'; not comparable: {stages['qat']['reason']}"}
    if predicted == "FAIL":
        if qat == FAIL:
            return {"agrees": True, "note": f"documented '{status}' ({doc.get('summary', '')}); "
                                            "QAT refuses it, as documented"}
        return {"agrees": False,
                "note": f"DIFFERS: documented '{status}' ({doc.get('summary', '')}), yet QAT went "
                        f"through ({qat}: {stages['qat']['reason']})"}
    if qat == FAIL:
        return {"agrees": False, "note": f"DIFFERS: documented '{status}', but QAT refused it: "
                                         f"{stages['qat']['reason']}"}
    later = [(k, c) for k, c in stages.items() if k not in ("qat",) and c["verdict"] in (FAIL, ERROR)]
    if later:
        k, c = later[0]
        return {"agrees": False,
                "note": f"DIFFERS: documented '{status}' (the QAT guide: allow-listed layers are "
                        f"supported), but {k} is {c['verdict']}: {c['reason']}"}
    note = f"documented '{status}'; QAT and every later stage that ran work"
    if status != "supported":
        note += f" (caveat: {doc.get('summary', '')})"
    return {"agrees": True, "note": note}

