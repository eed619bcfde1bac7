"""The latency claims (C2 on a host CPU, C3 on an accelerator) and the ceiling stated beside
them: what the hardware allows (int8 dot-product instructions, SIMD width, where the ops ran)."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from qat_harness.claims.base import Claim, Scope
from qat_harness.devices.base import Delegation, Role
from qat_harness.results import ClaimResult, Verdict

if TYPE_CHECKING:
    from qat_harness.stats import LatencySummary, RatioCI

#: int8 dot-product instructions (cpuinfo flag -> name), which make int8 kernels beat float.
INT8_DOT_PRODUCT_FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8",
                          "asimddp": "SDOT", "i8mm": "I8MM"}
#: Widest SIMD first (cpuinfo flag -> name).
SIMD_FLAGS = (("avx512f", "AVX-512 (512-bit)"), ("avx2", "AVX2 (256-bit)"), ("sve", "SVE"),
              ("asimd", "NEON (128-bit)"), ("avx", "AVX (256-bit, float only)"))


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """What bounds a speed-up on this device: the CPU's int8 dot-product instructions and SIMD
    width (None when they are not visible from the host), and where each variant's ops ran
    (``kernels``: variant -> {'delegated': {op: count}, 'builtin': [op, ...], 'backend': ...})."""
    int8_dot_product: list[str] | None
    simd: str | None
    kernels: dict[str, dict]
    text: str


@dataclasses.dataclass(frozen=True)
class SpeedUp:
    """float / int8 latency of one model on one device: what C2 and C3 judge."""
    ratio: RatioCI | None                        # median(float) / median(int8), with its interval
    float_latency: LatencySummary | None = None
    int8_latency: LatencySummary | None = None
    delegation: Delegation | None = None         # how much of the int8 graph the device ran
    cpu_flags: list[str] | None = None           # the host CPU's flags (a C2 FAIL names its dot product)
    ceiling: Ceiling | None = None
    simulated: bool = False


_NOT_TIMED = {Role.ORACLE: "reference kernels are the numeric oracle, not a tested backend",
              Role.EMULATED: "emulated: an emulator's timing says nothing of the hardware's, numerics only",
              Role.OVERHEAD: "the null device measures the harness's own overhead"}


class CpuLatency(Claim):
    id = "C2-cpu-latency"
    text = "Typically 1.5x to 4x lower CPU latency in the tested backends."
    scopes = (Scope.DEVICE,)
    roles = frozenset({Role.HOST_CPU})
    skipped_roles = _NOT_TIMED
    measures_hardware = True
    SPEEDUP_RANGE = (1.5, 4.0)
    expected = f"{SPEEDUP_RANGE[0]}x-{SPEEDUP_RANGE[1]}x faster than float"

    @classmethod
    def judge(cls, model: str, device: str, m: SpeedUp) -> ClaimResult:
        """float/int8 latency ratio (per round of ABBA blocks where timed so) with its bootstrap
        interval, judged against [1.5, 4]."""
        lo_ok, hi_ok = cls.SPEEDUP_RANGE
        ratio_ci, float_latency, int8_latency = m.ratio, m.float_latency, m.int8_latency
        if ratio_ci is None or float_latency is None or int8_latency is None:
            return cls.skip(model, device, "no latency measured")
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
        reason = (f"float median {float_latency.median_ms:.3f} ms / int8 median "
                  f"{int8_latency.median_ms:.3f} ms = {interval}: {why}")
        if verdict is Verdict.FAIL and m.cpu_flags is not None:
            has_dot = [f for f in m.cpu_flags if f in INT8_DOT_PRODUCT_FLAGS]
            reason += ("; the CPU has int8 dot-product instructions (" + ", ".join(has_dot) + ")"
                       if has_dot else "; the CPU lacks int8 dot-product instructions (VNNI / SDOT),"
                       " so XNNPACK's int8 kernels have little edge over its float ones")
        details: dict[str, Any] = {"ratio_ci": ratio_ci, "float": float_latency, "int8": int8_latency}
        if m.ceiling is not None:
            details["ceiling"] = m.ceiling
        return cls.result(model, device, verdict, round(r, 3), reason, details=details)


class AcceleratorLatency(Claim):
    id = "C3-accel"
    text = "Latency gains on compatible ML accelerators such as EdgeTPU and NNAPI."
    scopes = (Scope.DEVICE,)
    roles = frozenset({Role.ACCELERATOR})
    measures_hardware = True
    expected = "int8 faster than float on the accelerator, whole graph delegated"

    @classmethod
    def judge(cls, model: str, device: str, m: SpeedUp) -> ClaimResult:
        """Speed-up on an accelerator, and how much of the graph it really ran."""
        ratio_ci, delegation = m.ratio, m.delegation
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
        reason = ("[simulated] " if m.simulated else "") + "; ".join(parts + [why])
        details: dict[str, Any] = {"ratio_ci": ratio_ci, "delegation": delegation}
        if m.ceiling is not None:
            details["ceiling"] = m.ceiling
        return cls.result(model, device, verdict, round(ratio_ci.ratio, 3) if ratio_ci else None, reason,
                          simulated=m.simulated, details=details)


LATENCY = (CpuLatency, AcceleratorLatency)


def latency_claim(role: Role) -> type[CpuLatency] | type[AcceleratorLatency] | None:
    """The claim that judges the int8 speed-up of a device of this role (None: none does)."""
    return next((c for c in LATENCY if role in c.roles), None)


def ceiling(cpu_flags: list[str] | None, delegation: dict[str, Delegation | None],
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
