"""The documented claims of the TFMOT QAT guide (ids as in CLAIMS.md) and the functions that
turn measurements into verdicts. Each evaluator is pure: measurements in, ClaimResult out,
so every PASS / WARN / FAIL path is testable without a model."""
from __future__ import annotations

import dataclasses
from typing import Any

from qat_harness.devices.base import Delegation
from qat_harness.inspection import BnFoldCheck, FullIntegerCheck, PerAxisCheck
from qat_harness.results import ClaimResult, Verdict
from qat_harness.stats import LatencySummary, PairedDifference, Proportion, RatioCI

CLAIMS: dict[str, str] = {
    "C1-size": "With the API defaults, model size shrinks by 4x (8-bit instead of 32-bit float).",
    "C2-cpu-latency": "Typically 1.5x to 4x lower CPU latency in the tested backends.",
    "C3-accel": "Latency gains on compatible ML accelerators such as EdgeTPU and NNAPI.",
    "C4-full-int": "The converter can produce full-integer models.",
    "C5-per-axis": "Per-axis quantization for convolutional layers, not per-tensor.",
    "C6-8bit-only": "TFLite supports 8-bit quantization only; other bit widths have no deployment path.",
    "K1-cross-kernel": "A .tflite means the same on every kernel that loads it (XNNPACK, built-in, reference, OpenVINO).",
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
#: Fewer examples than this cannot bound a drop under 1 point even when the two models agree
#: on every one: by the rule of three, 0 disagreements in n leave up to 3/n of them possible.
ACCURACY_MIN_EXAMPLES = 300
#: int8 dot-product instructions (cpuinfo flag -> name), which make int8 kernels beat float.
INT8_DOT_PRODUCT_FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8",
                          "asimddp": "SDOT", "i8mm": "I8MM"}
#: Widest SIMD first (cpuinfo flag -> name).
SIMD_FLAGS = (("avx512f", "AVX-512 (512-bit)"), ("avx2", "AVX2 (256-bit)"), ("sve", "SVE"),
              ("asimd", "NEON (128-bit)"), ("avx", "AVX (256-bit, float only)"))


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
    interval = (f"{r:.2f}x [95% CI {lo:.2f}-{hi:.2f}]" if ratio_ci.ci_low is not None else
                f"{r:.2f}x (no CI: {ratio_ci.n_pairs} pairs are too few)")
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
        has_dot = [f for f in cpu_features if f in INT8_DOT_PRODUCT_FLAGS]
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
    """Judged on the Wilson interval, not the point estimate: PASS only when the whole
    interval clears the bar, and WARN 'too few examples' when n cannot show it at all."""
    from qat_harness.evidence import judge_rate

    rate = wilson.rate
    judged = judge_rate(wilson.successes, wilson.n, AGREEMENT_PASS, AGREEMENT_WARN)
    verdict = Verdict(judged.verdict)
    reason = f"int8 and float agree on {judged.reason}"
    return ClaimResult("A2-agreement", model, device, verdict, round(rate, 4),
                       _expected("A2-agreement"), reason, simulated=simulated,
                       details={"wilson": wilson, **(extra or {})})


# -- A1 with a control arm and paired intervals ------------------------------------------------
ARM_NAMES = {"float": "float", "float_ft": "float + same fine-tune", "qat_int8": "QAT int8",
             "int8": "int8", "ptq_int8": "PTQ int8"}


def paired_accuracy_claim(model: str, device: str, top1: dict[str, float], baseline: str,
                          candidate: str, paired: PairedDifference, extra: dict | None = None,
                          simulated: bool = False) -> ClaimResult:
    """A1 judged on the paired difference ``baseline`` - ``candidate`` on the same examples
    (``top1``: every arm's top-1, by variant; ``baseline`` is ``float_ft``, the float model
    fine-tuned like QAT, when it exists, so that extra training is not counted as a gain of
    quantization). PASS when the interval's upper end is within 1 point; FAIL when its lower
    end is above 1 point; WARN when the set is too small to tell 1 point apart or the
    interval straddles 1 point."""
    verdict, why = _paired_verdict(paired)
    name = ARM_NAMES.get
    interval = (f"{'drop' if paired.drop_points >= 0 else 'gain'} of {abs(paired.drop_points):.2f} points "
                f"[95% CI {paired.ci_low:+.2f} to {paired.ci_high:+.2f}], McNemar exact p={paired.mcnemar_p:.2g} "
                f"({paired.baseline_only} examples only {name(baseline, baseline)} got right, "
                f"{paired.candidate_only} only {name(candidate, candidate)})")
    arms = ", ".join(f"{name(v, v)} {a:.2%}" for v, a in top1.items())
    control = ("" if baseline == "float_ft" else
               "; no control arm (a float model fine-tuned like QAT): the difference includes "
               "any extra training the int8 model had")
    reason = (f"{name(baseline, baseline)} {top1[baseline]:.2%} -> {name(candidate, candidate)} "
              f"{top1[candidate]:.2%} on {paired.n} examples: {interval}: {why}{control}. Arms: {arms}")
    details = {"float_top1": top1.get("float"), "int8_top1": top1[candidate], "n": paired.n,
               "baseline": baseline, "arms": dict(top1), "paired": paired, **(extra or {})}
    return ClaimResult("A1-accuracy", model, device, verdict, round(paired.drop_points, 3),
                       _expected("A1-accuracy"), reason, simulated=simulated, details=details)


def _paired_verdict(paired: PairedDifference) -> tuple[Verdict, str]:
    if paired.ci_low > ACCURACY_DROP_PASS:
        return Verdict.FAIL, f"int8 loses significantly more than {ACCURACY_DROP_PASS:g} point"
    if paired.n < ACCURACY_MIN_EXAMPLES:
        return Verdict.WARN, (f"too small to tell {ACCURACY_DROP_PASS:g} point apart: with {paired.n} "
                              f"examples even full agreement leaves up to {300 / paired.n:.2f} points "
                              f"possible (rule of three); give at least {ACCURACY_MIN_EXAMPLES}")
    if paired.half_width > ACCURACY_DROP_PASS:
        return Verdict.WARN, (f"too small to tell {ACCURACY_DROP_PASS:g} point apart: the interval is "
                              f"+/-{paired.half_width:.2f} points wide on {paired.n} examples")
    if paired.ci_high <= ACCURACY_DROP_PASS:
        return Verdict.PASS, f"within {ACCURACY_DROP_PASS:g} point"
    return Verdict.WARN, f"the interval straddles {ACCURACY_DROP_PASS:g} point"


# -- the ceiling: what the hardware allows, beside each latency ratio ----------------------------
@dataclasses.dataclass(frozen=True)
class Ceiling:
    """What bounds a speed-up on this device: the CPU's int8 dot-product instructions and SIMD
    width (None when they are not visible from the host), and where each variant's ops ran
    (``kernels``: variant -> {'delegated': {op: count}, 'builtin': [op, ...], 'backend': ...})."""
    int8_dot_product: list[str] | None
    simd: str | None
    kernels: dict[str, dict]
    text: str


def ceiling(cpu_flags: list[str] | None, delegation: dict[str, Delegation],
            accelerator: bool = False) -> Ceiling:
    kernels = {v: _kernels(d) for v, d in delegation.items() if d is not None}
    if cpu_flags is None:
        dots, simd, isa = None, None, "the device's instruction set is not visible from the host"
    else:
        dots = [name for flag, name in INT8_DOT_PRODUCT_FLAGS.items() if flag in cpu_flags]
        simd = next((name for flag, name in SIMD_FLAGS if flag in cpu_flags), "no SIMD flag known")
        isa = (f"{simd}; int8 dot product: {', '.join(dots)}" if dots else
               f"{simd}; no int8 dot-product instructions (VNNI / SDOT / I8MM): int8 kernels "
               "widen to 16 bits and have little edge over float FMA, about 1x is this CPU's ceiling")
    parts = [isa] if not accelerator or cpu_flags is not None else []
    parts += [_kernel_text(v, k, accelerator) for v, k in kernels.items()]
    return Ceiling(dots, simd, kernels, "; ".join(parts))


def _kernels(d: Delegation) -> dict:
    return {"backend": d.backend, "delegated": d.details.get("delegated_ops"),
            "ops_delegated": d.ops_delegated, "ops_total": d.ops_total,
            "builtin": [name for name, _ in d.fallback]}


def _kernel_text(variant: str, k: dict, accelerator: bool) -> str:
    if k["ops_total"] is None:
        return f"{variant}: {k['backend']} (op mapping unknown)"
    where = (f"{k['ops_delegated']}/{k['ops_total']} ops ({k['ops_delegated'] / k['ops_total']:.0%}) "
             f"on {k['backend']}" if k["ops_total"] else f"no ops on {k['backend']}")
    if k["delegated"] and not accelerator:
        where += " (" + ", ".join(f"{op} x{n}" for op, n in k["delegated"].items()) + ")"
    rest = f", builtin CPU kernels: {', '.join(k['builtin'])}" if k["builtin"] else ""
    return f"{variant}: {where}{rest}"
