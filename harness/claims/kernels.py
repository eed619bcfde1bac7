"""Claims about kernels: the same file means the same on every kernel that loads it (K1, across
the kernels, with ``--recipes``) and the int8 model under test computes on each device what
LiteRT's reference kernels, the numeric oracle, compute (K2)."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Any

from qat_harness.claims.base import Claim, Scope
from qat_harness.devices.base import Role
from qat_harness.results import ClaimResult, Verdict

if TYPE_CHECKING:
    from qat_harness.measure.difference import OutputDifference
    from qat_harness.stats import Proportion


# -- K1 ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class KernelPair:
    a: str
    b: str
    agreement: Proportion          # top-1 of kernel a equals top-1 of kernel b, per input
    max_abs: float | None


@dataclasses.dataclass(frozen=True)
class KernelComparison:
    """One file's outputs on several kernels, compared pair by pair."""
    recipe: str
    kernels: list[str]                       # the kernels that ran the file
    pairs: list[KernelPair]
    nan_kernels: list[str]                   # kernels with NaN among their outputs
    classes_predicted: dict[str, int]        # kernel -> how many distinct top-1 classes
    first_class: dict[str, int | None]       # kernel -> top-1 of the first input
    failed: dict[str, tuple[str, str]]       # kernel that did not run the file -> (kind, reason)
    #: What decides which of two disagreeing kernels is wrong: each kernel's outputs on the file
    #: against one common reference, named here ('float (on cpu-ref)', 'the reference kernels
    #: (cpu-ref)'); None when there is none, and the majority of the kernels decides.
    judged_against: str | None = None
    from_reference: dict[str, OutputDifference] = dataclasses.field(default_factory=dict)
    #: what two kernels "agree" on: the same top-1 (class scores), or, for any other output, all
    #: of an input's values within ``tolerances.KERNEL_VALUES_AGREE_REL`` of the output's range
    unit: str = "top-1 agreement"


class CrossKernelAgreement(Claim):
    id = "K1-cross-kernel"
    text = "A .tflite means the same on every kernel that loads it (XNNPACK, built-in, reference, OpenVINO)."
    scopes = (Scope.RECIPE,)
    #: Top-1 agreement between two kernels on the same file: PASS when every pair is at least this...
    AGREEMENT_PASS = 0.99
    #: ...FAIL when a pair's Wilson interval lies wholly below this; WARN in between.
    AGREEMENT_FAIL = 0.95
    #: Of two kernels in clear disagreement, the one whose error against the reference (float, or
    #: the reference kernels) has at least this many dB more power (twice the error power) is
    #: blamed; nearer than that, which of them is right cannot be told.
    FURTHER_DB = 3.0
    expected = (f"every pair of kernels agrees on top-1 for >= {AGREEMENT_PASS:.0%} of inputs "
                f"(FAIL when an interval lies below {AGREEMENT_FAIL:.0%})")

    @classmethod
    def apart(cls, pair: KernelPair) -> bool:
        """Is the pair in clear disagreement (its whole interval below the FAIL bar)?"""
        return pair.agreement.ci_high is not None and pair.agreement.ci_high < cls.AGREEMENT_FAIL

    @classmethod
    def further(cls, m: KernelComparison, pair: KernelPair) -> str | None:
        """Of two kernels, the one clearly further from the comparison's reference (None when
        neither is, or when one of them has no distance to it)."""
        a, b = m.from_reference.get(pair.a), m.from_reference.get(pair.b)
        if a is None or b is None:
            return None
        error_a, error_b = _error_db(a), _error_db(b)
        if error_a - error_b >= cls.FURTHER_DB:
            return pair.a
        if error_b - error_a >= cls.FURTHER_DB:
            return pair.b
        return None

    @classmethod
    def blamed(cls, m: KernelComparison) -> list[str]:
        """The kernels blamed for a disagreement: in every pair in clear disagreement, the kernel
        further from the reference (float, else the reference kernels); by majority (the kernel
        that disagrees with all others) only when there is no reference. And any kernel that gives
        NaN where others do not."""
        bad = [p for p in m.pairs if cls.apart(p)]
        if m.judged_against is None:
            blamed = _odd_ones(m.kernels, bad)
        else:
            further = {cls.further(m, p) for p in bad}
            blamed = [k for k in m.kernels if k in further]
        return blamed + [n for n in _nan_odd(m) if n not in blamed]

    @classmethod
    def not_compared(cls, model: str, recipe: str, why: str) -> ClaimResult:
        """SKIP: the recipe gave no file of its own to compare kernels on (refused, or its file
        is the float model: it quantized nothing)."""
        return cls.result(model, f"recipe:{recipe}", Verdict.SKIP, None, why, details={"recipe": recipe})

    @staticmethod
    def not_loaded(failed: dict[str, tuple[str, str]]) -> str:
        """Why no kernel ran a file, one line: each distinct reason once (the kernel's own line,
        e.g. ``conv.cc:390 ... (37 != 0)``, when LiteRT gave one), with the kernels that gave it."""
        by_reason: dict[str, list[str]] = {}
        for kernel, (kind, reason) in failed.items():
            by_reason.setdefault(_kernel_line(reason) or f"{kind}: {_first_line(reason)}", []).append(kernel)
        return "no kernel loads the file: " + "; ".join(f"{r} ({', '.join(k)})" for r, k in by_reason.items())

    @classmethod
    def judge(cls, model: str, m: KernelComparison) -> ClaimResult:
        """A crash where other kernels run the file is a FAIL, a clean refusal a WARN."""
        names, pairs, device = m.kernels, m.pairs, f"recipe:{m.recipe}"
        bad = [p for p in pairs if cls.apart(p)]
        weak = [p for p in pairs if p not in bad and (p.agreement.rate or 0) < cls.AGREEMENT_PASS]
        nan_odd = _nan_odd(m)
        odd = cls.blamed(m)
        failed = {k: f"{kind}: {reason}" for k, (kind, reason) in m.failed.items()}
        details: dict[str, Any] = {"recipe": m.recipe, "kernels": names,
                                   "pairs": [dataclasses.asdict(p) for p in pairs],
                                   "odd": odd, "blamed_against": m.judged_against or "majority of the kernels",
                                   "from_reference": {k: d.to_dict() for k, d in m.from_reference.items()},
                                   "failed": failed, "classes_predicted": dict(m.classes_predicted)}
        measured = {f"{p.a}~{p.b}": round(p.agreement.rate or 0.0, 4) for p in pairs}
        if not names:
            return cls.result(model, device, Verdict.ERROR, measured, f"{m.recipe}: {cls.not_loaded(m.failed)}"[:600],
                              details=details)
        parts: list[str] = []
        verdict = Verdict.PASS
        if bad or nan_odd:
            verdict = Verdict.FAIL
            for kernel in odd:
                mine = [p for p in bad if kernel in (p.a, p.b)
                        and (m.judged_against is None or cls.further(m, p) == kernel)]
                vs = ", ".join(f"{p.b if p.a == kernel else p.a} ({p.agreement.rate:.1%} {m.unit}, "
                               f"max abs diff {_fmt(p.max_abs)})" for p in mine)
                text = f"{kernel} disagrees with {vs}" if vs else f"{kernel} gives NaN outputs"
                if vs and m.judged_against is not None:
                    nearer = [p.b if p.a == kernel else p.a for p in mine]
                    text += (f" and is the further from {m.judged_against} ("
                             + ", ".join(f"{k} {_closeness(m.from_reference[k])}" for k in [kernel, *nearer]) + ")")
                others = [m.classes_predicted[n] for n in names if n != kernel and n in m.classes_predicted]
                if m.classes_predicted.get(kernel) == 1 and others and max(others) > 1:
                    text += f"; it returns class {m.first_class[kernel]} for every input"
                parts.append(text)
            for p in bad:
                if m.judged_against is None and (p.a in odd or p.b in odd):
                    continue
                if m.judged_against is not None and cls.further(m, p) is not None:
                    continue
                if m.judged_against is None or p.a not in m.from_reference or p.b not in m.from_reference:
                    why = "which is right cannot be told from two kernels"
                else:
                    why = (f"both as far from {m.judged_against}: {p.a} {_closeness(m.from_reference[p.a])}, "
                           f"{p.b} {_closeness(m.from_reference[p.b])}; which is right cannot be told")
                parts.append(f"{p.a} and {p.b} disagree ({p.agreement.rate:.1%} {m.unit}, "
                             f"max abs diff {_fmt(p.max_abs)}; {why})")
        elif weak:
            verdict = Verdict.WARN
            parts += [f"{p.a} vs {p.b}: {p.agreement.rate:.1%} {m.unit} (interval "
                      f"{p.agreement.ci_low:.1%}-{p.agreement.ci_high:.1%}), max abs diff {_fmt(p.max_abs)}"
                      for p in weak]
        if m.failed:
            crashed = [k for k, (kind, _r) in m.failed.items() if kind in ("crash", "timeout")]
            if crashed:
                verdict = Verdict.FAIL
            elif verdict is Verdict.PASS:
                verdict = Verdict.WARN
            parts += [f"{k} did not run it ({failed[k][:160]}) while {', '.join(names)} did" for k in m.failed]
        if verdict is Verdict.PASS:
            worst = min(pairs, key=lambda p: p.agreement.rate or 0.0, default=None)
            if worst is None:
                reason = f"only {names[0]} ran the file: nothing to compare"
                verdict = Verdict.SKIP
            else:
                reason = (f"{', '.join(names)} agree on {m.recipe}: lowest pairwise {m.unit} "
                          f"{worst.agreement.rate:.1%} ({worst.a} vs {worst.b}), max abs diff "
                          f"{_fmt(max((p.max_abs or 0) for p in pairs))}")
        else:
            reason = f"{m.recipe}: " + "; ".join(parts)
        return cls.result(model, device, verdict, measured, reason, details=details)


#: A LiteRT kernel's check that failed: 'tflite/kernels/conv.cc:390 <condition> (37 != 0)', and the
#: node it stopped at ('Node number 0 (CONV_2D) failed to prepare').
_KERNEL_CHECK = re.compile(r"([\w./-]+\.cc:\d+ .*?)(?=Node number|$)")
_KERNEL_NODE = re.compile(r"Node number \d+ \([^)]*\) failed to \w+")


def _kernel_line(reason: str) -> str | None:
    text = " ".join(str(reason).split())
    check = _KERNEL_CHECK.search(text)
    if check is None:
        return None
    node = _KERNEL_NODE.search(text)
    return check.group(1).strip() + (f"; {node.group(0)}" if node else "")


def _first_line(reason: str) -> str:
    return next((line.strip() for line in str(reason).splitlines() if line.strip()), "no reason given")[:200]


def _nan_odd(m: KernelComparison) -> list[str]:
    return [n for n in m.nan_kernels if len(m.nan_kernels) < len(m.kernels)]


def _error_db(d: OutputDifference) -> float:
    """A kernel's error power against the reference, in dB of the reference's power (minus its
    SQNR): every kernel of one comparison is measured against the same reference, so the
    values compare. NaN is the furthest, identical the nearest."""
    if d.max_abs is None or math.isnan(d.max_abs):
        return math.inf
    if d.max_abs == 0:
        return -math.inf
    if d.sqnr_db is not None:
        return -d.sqnr_db
    return 20 * math.log10(d.max_abs)   # the reference is zero everywhere: its power is no scale


def _closeness(d: OutputDifference) -> str:
    if d.max_abs is None or math.isnan(d.max_abs):
        return "NaN"
    if d.max_abs == 0:
        return "identical"
    return f"SQNR {d.sqnr_db:.1f} dB" if d.sqnr_db is not None else f"max abs {d.max_abs:.3g}"


def _odd_ones(names: list[str], bad: list[KernelPair]) -> list[str]:
    """Without a reference, the majority: kernels in clear disagreement with every other kernel,
    when the others agree among themselves (with two kernels nobody can be named)."""
    if len(names) < 3 or not bad:
        return []
    odd = []
    for k in names:
        others = [n for n in names if n != k]
        mine = {p.b if p.a == k else p.a for p in bad if k in (p.a, p.b)}
        if mine == set(others):
            odd.append(k)
    return odd if len(odd) < len(names) else []


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


# -- K2 ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class VersusReference:
    """The int8 model under test on one device against the same inputs on LiteRT's reference
    kernels: one difference per output, each in its own domain (``measure.difference.output_difference``)."""
    role: Role
    differences: tuple[OutputDifference, ...] = ()
    not_run: str | None = None          # why the device has no outputs of the model under test
    oracle_error: str | None = None     # why the reference kernels have none
    simulated: bool = False


class ReferenceAgreement(Claim):
    id = "K2-reference-agreement"
    text = ("(implied) an int8 model computes on every device what LiteRT's reference kernels, "
            "the numeric oracle, compute.")
    scopes = (Scope.DEVICE,)
    roles = frozenset({Role.HOST_CPU, Role.ACCELERATOR, Role.EMULATED})
    skipped_roles = {Role.ORACLE: "this device is the reference kernels: the oracle itself",
                     Role.OVERHEAD: "the null device runs no kernel"}
    # Quantized outputs, in steps of an 8-bit output's scale (1/256 of its range; a 16-bit
    # output's own steps are 256 times finer and count as such). Kernels may round a
    # requantization differently, and a one-step difference in an early layer can grow a little
    # on its way through the graph: PASS when at least this share of values is provably within
    # one step (from the fields of OutputDifference, ``within_one_step``)...
    WITHIN_ONE_STEP_PASS = 0.99
    # ...and no value is more than a few steps apart.
    MAX_STEPS_PASS = 4
    # FAIL when the typical value is more than a step apart, or one value is 1/16 of the
    # output's range apart: no rounding difference accumulates to that.
    MEAN_STEPS_FAIL = 1.0
    MAX_STEPS_FAIL = 16
    # Float outputs, relative to the reference's largest magnitude (about 2.5 int8 steps of
    # the range; the trace calls a 10% relative error a departure).
    FLOAT_PASS_REL = 0.01
    FLOAT_FAIL_REL = 0.1
    # Class-id outputs (an ArgMax): the share of equal ids, as K1 judges two kernels' top-1.
    IDS_PASS = CrossKernelAgreement.AGREEMENT_PASS
    IDS_FAIL = CrossKernelAgreement.AGREEMENT_FAIL
    expected = (f">= {WITHIN_ONE_STEP_PASS:.0%} of quantized values within 1 step, max <= {MAX_STEPS_PASS} "
                f"steps (float outputs: max rel <= {FLOAT_PASS_REL:g}; ids: >= {IDS_PASS:.0%} equal)")

    @classmethod
    def judge(cls, model: str, device: str, m: VersusReference) -> ClaimResult:
        if m.role in cls.skipped_roles:
            return cls.skip_role(model, device, m.role)
        if m.not_run is not None:
            return cls.error(model, device, m.not_run)
        if m.oracle_error is not None or not m.differences:
            return cls.skip(model, device, f"the reference kernels did not run the model "
                                           f"({m.oracle_error or 'no outputs'}): nothing to compare with")
        judged = [cls.judge_output(d) for d in m.differences]
        verdict = Verdict.worst(v for v, _ in judged)
        reason = "; ".join(text for _, text in judged)
        return cls.result(model, device, verdict, {d.output: d.headline for d in m.differences},
                          ("[simulated] " if m.simulated else "") + "vs the reference kernels: " + reason,
                          simulated=m.simulated, details={"outputs": list(m.differences)})

    @staticmethod
    def steps_per_8bit_step(d: OutputDifference) -> int:
        """How many of this output's own steps make one step of an 8-bit output (256 for int16)."""
        bits = re.match(r"u?int(\d+) steps$", d.domain)
        return 2 ** max(0, int(bits.group(1)) - 8) if bits else 1

    @classmethod
    def within_one_step(cls, d: OutputDifference) -> float:
        """The share of values at most one 8-bit step apart, at least: every value that is not
        identical adds one own step to the mean, and one beyond k own steps adds k more."""
        k = cls.steps_per_8bit_step(d)
        if (d.max_steps or 0) <= k:
            return 1.0
        return max(d.fraction_exact, 1.0 - max(0.0, (d.mean_steps or 0.0) - (1.0 - d.fraction_exact)) / k)

    @classmethod
    def judge_output(cls, d: OutputDifference) -> tuple[Verdict, str]:
        if d.max_steps is not None:
            k, mean = cls.steps_per_8bit_step(d), d.mean_steps or 0.0
            within = cls.within_one_step(d)
            text = (f"{d.output}: max {d.max_steps} {d.domain}, mean {mean:.3f}, "
                    f"{d.fraction_exact:.1%} identical, >= {within:.1%} within "
                    + ("1 step" if k == 1 else f"{k} steps (one 8-bit step)"))
            if mean / k > cls.MEAN_STEPS_FAIL or d.max_steps / k > cls.MAX_STEPS_FAIL:
                return Verdict.FAIL, text + ": computes something else"
            if within >= cls.WITHIN_ONE_STEP_PASS and d.max_steps / k <= cls.MAX_STEPS_PASS:
                return Verdict.PASS, text
            return Verdict.WARN, text + ": more than rounding apart"
        if d.max_rel is not None:
            text = f"{d.output}: {d.headline}"
            if d.max_rel > cls.FLOAT_FAIL_REL:
                return Verdict.FAIL, text + ": computes something else"
            return (Verdict.PASS, text) if d.max_rel <= cls.FLOAT_PASS_REL else (Verdict.WARN, text)
        text = f"{d.output}: {d.headline}"
        if d.fraction_exact < cls.IDS_FAIL:
            return Verdict.FAIL, text
        return (Verdict.PASS, text) if d.fraction_exact >= cls.IDS_PASS else (Verdict.WARN, text)
