"""The documented claims of the TFMOT QAT guide (ids as in CLAIMS.md) and the functions that
turn measurements into verdicts. Each evaluator is pure: measurements in, ClaimResult out,
so every PASS / WARN / FAIL path is testable without a model."""
from __future__ import annotations

from typing import Any

from qat_harness.devices.base import Delegation
from qat_harness.inspection import BnFoldCheck, FullIntegerCheck, PerAxisCheck
from qat_harness.results import ClaimResult, Verdict
from qat_harness.stats import LatencySummary, Proportion, RatioCI

CLAIMS: dict[str, str] = {
    "C1-size": "With the API defaults, model size shrinks by 4x (8-bit instead of 32-bit float).",
    "C2-cpu-latency": "Typically 1.5x to 4x lower CPU latency in the tested backends.",
    "C3-accel": "Latency gains on compatible ML accelerators such as EdgeTPU and NNAPI.",
    "C4-full-int": "The converter can produce full-integer models.",
    "C5-per-axis": "Per-axis quantization for convolutional layers, not per-tensor.",
    "C6-8bit-only": "TFLite supports 8-bit quantization only; other bit widths have no deployment path.",
    "M1-api": "Keras Sequential and Functional models only; subclassed models not supported.",
    "M2-layers": "Models that use the allow-listed layers are supported.",
    "M3-bn-fold": "BatchNormalization is supported when it follows Conv2D or DepthwiseConv2D (folded).",
    "M4-concat": "Concat works in limited cases.",
    "M5-rnn": "RNN/LSTM are not yet covered.",
    "A1-accuracy": "The int8 model's top-1 stays within about 1 point of the float model.",
    "A2-agreement": "int8 top-1 equals float top-1 on (nearly) every input, per device.",
}

# Judgement thresholds, in one place so the report can state them.
SIZE_EXPECTED = 4.0
SIZE_PASS_MIN = 3.5   # metadata and int32 biases keep small models a little under 4x
SIZE_WARN_MIN = 3.0
CPU_SPEEDUP_RANGE = (1.5, 4.0)
ACCURACY_DROP_PASS = 1.0   # points; the worst documented drop is 1.0
ACCURACY_DROP_WARN = 2.0
AGREEMENT_PASS = 0.95
AGREEMENT_WARN = 0.90


def error(claim_id: str, model: str, device: str, reason: str, **details) -> ClaimResult:
    return ClaimResult(claim_id, model, device, Verdict.ERROR, None, _expected(claim_id), reason,
                       details=details)


def skip(claim_id: str, model: str, device: str, reason: str) -> ClaimResult:
    return ClaimResult(claim_id, model, device, Verdict.SKIP, None, _expected(claim_id), reason)


def _expected(claim_id: str) -> Any:
    return {
        "C1-size": f"~{SIZE_EXPECTED:g}x (PASS >= {SIZE_PASS_MIN}x, WARN >= {SIZE_WARN_MIN}x)",
        "C2-cpu-latency": f"{CPU_SPEEDUP_RANGE[0]}x-{CPU_SPEEDUP_RANGE[1]}x faster than float",
        "C3-accel": "int8 faster than float on the accelerator, whole graph delegated",
        "C4-full-int": "all ops and tensors int8/int32, int8 input and output",
        "C5-per-axis": "conv/depthwise weights: one scale per output channel",
        "M3-bn-fold": "no separate BatchNorm / MUL / ADD after conv",
        "A1-accuracy": f"drop <= {ACCURACY_DROP_PASS} point",
        "A2-agreement": f">= {AGREEMENT_PASS:.0%} of inputs",
    }.get(claim_id, "")


def size_claim(model: str, float_bytes: int, int8_bytes: int, ptq_bytes: int | None = None,
               int8_label: str = "QAT int8") -> ClaimResult:
    ratio = float_bytes / int8_bytes
    if ratio >= SIZE_PASS_MIN:
        verdict, why = Verdict.PASS, "within tolerance of 4x"
    elif ratio >= SIZE_WARN_MIN:
        verdict, why = Verdict.WARN, "under 4x: fixed flatbuffer overhead and int32 biases weigh on this model"
    else:
        verdict, why = Verdict.FAIL, "far under 4x"
    reason = f"float {float_bytes / 1024:.1f} KiB / {int8_label} {int8_bytes / 1024:.1f} KiB = {ratio:.2f}x: {why}"
    details = {"float_bytes": float_bytes, "qat_int8_bytes": int8_bytes}
    if ptq_bytes:
        details.update(ptq_int8_bytes=ptq_bytes, ptq_ratio=round(float_bytes / ptq_bytes, 3))
    return ClaimResult("C1-size", model, "any", verdict, round(ratio, 3), _expected("C1-size"),
                       reason, details=details)


def cpu_latency_claim(model: str, device: str, ratio_ci: RatioCI, float_stats: LatencySummary,
                      int8_stats: LatencySummary, cpu_features: list[str] | None = None) -> ClaimResult:
    """float/int8 ratio of medians with its bootstrap interval, judged against [1.5, 4]."""
    lo_ok, hi_ok = CPU_SPEEDUP_RANGE
    r, lo, hi = ratio_ci.ratio, ratio_ci.ci_low, ratio_ci.ci_high
    lo = r if lo is None else lo
    hi = r if hi is None else hi
    interval = f"{r:.2f}x [95% CI {lo:.2f}-{hi:.2f}]"
    if lo >= lo_ok and hi <= hi_ok:
        verdict, why = Verdict.PASS, "inside the documented range"
    elif hi < lo_ok:
        verdict, why = Verdict.FAIL, "int8 is not the documented 1.5x faster than float here"
        if r < 1.0:
            why = "int8 is slower than float here"
    elif lo > hi_ok:
        verdict, why = Verdict.WARN, "faster than the documented range"
    else:
        verdict, why = Verdict.WARN, "the interval straddles the documented range"
    reason = (f"float median {float_stats.median_ms:.3f} ms / int8 median "
              f"{int8_stats.median_ms:.3f} ms = {interval}: {why}")
    if verdict is Verdict.FAIL and cpu_features is not None:
        has_dot = [f for f in cpu_features if f in ("avx512_vnni", "avx_vnni", "asimddp", "i8mm")]
        reason += ("; the CPU has int8 dot-product instructions (" + ", ".join(has_dot) + ")"
                   if has_dot else "; the CPU lacks int8 dot-product instructions (VNNI / SDOT),"
                   " so XNNPACK's int8 kernels have little edge over its float ones")
    return ClaimResult("C2-cpu-latency", model, device, verdict, round(r, 3),
                       _expected("C2-cpu-latency"), reason,
                       details={"ratio_ci": ratio_ci, "float": float_stats, "int8": int8_stats})


def accelerator_claim(model: str, device: str, ratio_ci: RatioCI | None, delegation: Delegation | None,
                      simulated: bool) -> ClaimResult:
    """Speed-up on an accelerator, and how much of the graph it really ran."""
    frac = delegation.fraction if delegation else None
    parts = []
    if delegation and delegation.ops_total is not None:
        parts.append(f"{delegation.ops_delegated}/{delegation.ops_total} ops on {delegation.backend}")
    if ratio_ci:
        parts.append(f"speed-up {ratio_ci.ratio:.2f}x")
    if frac is not None and frac == 0:
        verdict, why = Verdict.FAIL, "the accelerator ran none of the graph"
    elif ratio_ci and ratio_ci.ci_high is not None and ratio_ci.ci_high < 1.0:
        verdict, why = Verdict.FAIL, "int8 slower than float on this device"
    elif frac is not None and frac < 1:
        verdict, why = Verdict.WARN, "partly delegated: the rest ran on the CPU"
    elif ratio_ci is None:
        verdict, why = Verdict.SKIP, "no latency measured"
    elif ratio_ci.ci_low is not None and ratio_ci.ci_low > 1.0:
        verdict, why = Verdict.PASS, "faster, fully delegated" if frac == 1 else "faster"
    else:
        verdict, why = Verdict.WARN, "no significant gain"
    reason = ("[simulated] " if simulated else "") + "; ".join(parts + [why])
    return ClaimResult("C3-accel", model, device, verdict,
                       round(ratio_ci.ratio, 3) if ratio_ci else None, _expected("C3-accel"),
                       reason, simulated=simulated,
                       details={"ratio_ci": ratio_ci, "delegation": delegation})


def full_integer_claim(model: str, check: FullIntegerCheck, variant: str = "qat_int8") -> ClaimResult:
    verdict = Verdict.PASS if check.ok else Verdict.FAIL
    return ClaimResult("C4-full-int", model, "any", verdict,
                       {"io": check.io_dtypes, "float_ops": check.float_ops},
                       _expected("C4-full-int"), f"{variant}: {check.reason}",
                       details={"check": check, "variant": variant})


def per_axis_claim(model: str, check: PerAxisCheck, variant: str = "qat_int8") -> ClaimResult:
    verdict = Verdict.PASS if check.ok else Verdict.FAIL
    if check.ok and not check.conv_per_channel:
        verdict = Verdict.SKIP
    measured = {"conv_per_channel": check.conv_per_channel, "conv_per_tensor": check.conv_per_tensor,
                "dense": check.dense}
    return ClaimResult("C5-per-axis", model, "any", verdict, measured, _expected("C5-per-axis"),
                       f"{variant}: {check.reason}", details={"variant": variant})


def bn_fold_claim(model: str, check: BnFoldCheck, has_batchnorm: bool | None) -> ClaimResult:
    """``has_batchnorm`` None: the source model is unknown (a .tflite given as it is), so the
    check judges what the file shows and says that it cannot know more."""
    if has_batchnorm is False:
        return skip("M3-bn-fold", model, "any", "the model has no BatchNormalization")
    verdict = Verdict.PASS if check.ok else Verdict.FAIL
    reason = check.reason
    if has_batchnorm is None:
        reason += " (whether the source model had BatchNormalization is not known from the .tflite)"
    return ClaimResult("M3-bn-fold", model, "any", verdict, {"unfolded_after": check.unfolded_after},
                       _expected("M3-bn-fold"), reason)


def accuracy_claim(model: str, device: str, float_acc: float, int8_acc: float, n: int,
                   extra: dict | None = None, simulated: bool = False) -> ClaimResult:
    drop = (float_acc - int8_acc) * 100
    if drop <= ACCURACY_DROP_PASS:
        verdict = Verdict.PASS
    elif drop <= ACCURACY_DROP_WARN:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.FAIL
    reason = (f"float {float_acc:.2%} -> QAT int8 {int8_acc:.2%} on {n} examples: "
              f"{'drop' if drop >= 0 else 'gain'} of {abs(drop):.2f} points")
    return ClaimResult("A1-accuracy", model, device, verdict, round(drop, 3),
                       _expected("A1-accuracy"), reason, simulated=simulated,
                       details={"float_top1": float_acc, "int8_top1": int8_acc, "n": n, **(extra or {})})


def agreement_claim(model: str, device: str, wilson: Proportion, simulated: bool = False,
                    extra: dict | None = None) -> ClaimResult:
    rate = wilson.rate
    if rate >= AGREEMENT_PASS:
        verdict = Verdict.PASS
    elif rate >= AGREEMENT_WARN:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.FAIL
    reason = (f"int8 and float agree on {wilson.successes}/{wilson.n} inputs "
              f"({rate:.2%}, 95% CI {wilson.ci_low:.2%}-{wilson.ci_high:.2%})")
    return ClaimResult("A2-agreement", model, device, verdict, round(rate, 4),
                       _expected("A2-agreement"), reason, simulated=simulated,
                       details={"wilson": wilson, **(extra or {})})
