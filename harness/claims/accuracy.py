"""The accuracy claims: A1 (top-1 within about a point of float, judged on a paired interval
against a control arm) and A2 (int8 answers like float, judged on a Wilson interval)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qat_harness.claims.base import Claim, Scope
from qat_harness.devices.base import Role
from qat_harness.evidence import judge_rate
from qat_harness.results import ClaimResult, Verdict

if TYPE_CHECKING:
    from qat_harness.stats import PairedDifference, Proportion

ARM_NAMES = {"float": "float", "float_ft": "float + same fine-tune", "qat_int8": "QAT int8",
             "int8": "int8", "ptq_int8": "PTQ int8"}


@dataclasses.dataclass(frozen=True)
class PairedAccuracy:
    """Top-1 of every arm on the same examples (``top1``, by variant) and the paired
    difference ``baseline`` - ``candidate``. ``baseline`` is ``float_ft``, the float model
    fine-tuned like QAT, when it exists, so that extra training is not counted as a gain of
    quantization. ``context``: what the report shows beside it, not judged."""
    top1: Mapping[str, float]
    baseline: str
    candidate: str
    paired: PairedDifference
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    simulated: bool = False


@dataclasses.dataclass(frozen=True)
class TopOneAgreement:
    """How often int8 top-1 equals float top-1 on the same inputs (``unit`` when the
    comparison is per output element, e.g. class-id outputs)."""
    int8_vs_float: Proportion
    ptq_vs_float: Proportion | None = None
    unit: str | None = None
    simulated: bool = False


class _AccuracyClaim(Claim):
    scopes = (Scope.DEVICE,)
    roles = frozenset(Role)


class Accuracy(_AccuracyClaim):
    id = "A1-accuracy"
    text = "The int8 model's top-1 stays within about 1 point of the float model."
    DROP_PASS = 1.0   # points; the worst documented drop is 1.0
    #: Fewer examples than this cannot bound a drop under 1 point even when the two models agree
    #: on every one: by the rule of three, 0 disagreements in n leave up to 3/n of them possible.
    MIN_EXAMPLES = 300
    expected = f"drop <= {DROP_PASS} point"

    @classmethod
    def judge(cls, model: str, device: str, m: PairedAccuracy) -> ClaimResult:
        """PASS when the interval's upper end is within 1 point; FAIL when its lower end is
        above 1 point; WARN when the set is too small to tell 1 point apart or the interval
        straddles 1 point."""
        paired, baseline, candidate, top1 = m.paired, m.baseline, m.candidate, m.top1
        verdict, why = cls._verdict(paired)
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
                   "baseline": baseline, "arms": dict(top1), "paired": paired, **m.context}
        return cls.result(model, device, verdict, round(paired.drop_points, 3), reason,
                          simulated=m.simulated, details=details)

    @classmethod
    def _verdict(cls, paired: PairedDifference) -> tuple[Verdict, str]:
        bar = cls.DROP_PASS
        if paired.ci_low > bar:
            return Verdict.FAIL, f"int8 loses significantly more than {bar:g} point"
        if paired.n < cls.MIN_EXAMPLES:
            return Verdict.WARN, (f"too small to tell {bar:g} point apart: with {paired.n} "
                                  f"examples even full agreement leaves up to {300 / paired.n:.2f} points "
                                  f"possible (rule of three); give at least {cls.MIN_EXAMPLES}")
        if paired.half_width > bar:
            return Verdict.WARN, (f"too small to tell {bar:g} point apart: the interval is "
                                  f"+/-{paired.half_width:.2f} points wide on {paired.n} examples")
        if paired.ci_high <= bar:
            return Verdict.PASS, f"within {bar:g} point"
        return Verdict.WARN, f"the interval straddles {bar:g} point"


class Agreement(_AccuracyClaim):
    id = "A2-agreement"
    text = "int8 top-1 equals float top-1 on (nearly) every input, per device."
    PASS_AT = 0.95
    WARN_AT = 0.90
    expected = f">= {PASS_AT:.0%} of inputs"

    @classmethod
    def judge(cls, model: str, device: str, m: TopOneAgreement) -> ClaimResult:
        """Judged on the Wilson interval, not the point estimate: PASS only when the whole
        interval clears the bar, and WARN 'too few examples' when n cannot show it at all."""
        wilson = m.int8_vs_float
        judged = judge_rate(wilson.successes, wilson.n, cls.PASS_AT, cls.WARN_AT)
        details: dict[str, Any] = {"wilson": wilson}
        if m.ptq_vs_float is not None:
            details["ptq_agreement"] = m.ptq_vs_float
        if m.unit is not None:
            details["unit"] = m.unit
        rate = None if wilson.rate is None else round(wilson.rate, 4)
        return cls.result(model, device, Verdict(judged.verdict), rate,
                          f"int8 and float agree on {judged.reason}", simulated=m.simulated, details=details)
