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
    degenerate: str | None = None       # why float's answers say nothing on these inputs


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
        if m.degenerate:  # agreeing on one answer for every input is not evidence
            judged = dataclasses.replace(judged, verdict=Verdict.WARN.value,
                                         reason=f"{judged.reason}; degenerate: the inputs do not exercise "
                                                f"the model ({m.degenerate})")
        details: dict[str, Any] = {"wilson": wilson}
        if m.ptq_vs_float is not None:
            details["ptq_agreement"] = m.ptq_vs_float
        if m.unit is not None:
            details["unit"] = m.unit
        rate = None if wilson.rate is None else round(wilson.rate, 4)
        return cls.result(model, device, Verdict(judged.verdict), rate,
                          f"int8 and float agree on {judged.reason}", simulated=m.simulated, details=details)


@dataclasses.dataclass(frozen=True)
class OutputFidelity:
    """Every output that is not class scores (a regression head, a box, a mask, a feature map),
    the file under test against float on the same device, both as real values."""
    outputs: tuple[Any, ...]          # measure.agreement.Fidelity, one per output
    simulated: bool = False


class Fidelity(_AccuracyClaim):
    id = "A3-output-fidelity"
    text = ("(implied) the int8 model's outputs that are not class scores stay close to float's "
            "(a regression, a box, a mask: top-1 means nothing there).")
    PASS_DB = 20.0    # error power at most 1% of the output's power
    FAIL_DB = 10.0    # error power above 10% of it
    expected = f"SQNR >= {PASS_DB:g} dB per output"

    @classmethod
    def judge(cls, model: str, device: str, m: OutputFidelity) -> ClaimResult:
        """The worst output decides: PASS at an SQNR of at least 20 dB, FAIL below 10 dB, WARN
        between; WARN 'degenerate' when float's output does not vary over the inputs."""
        if not m.outputs:
            return cls.skip(model, device, "every output is class scores or ids: A2 judges them")
        rows, verdicts = [], []
        for f in m.outputs:
            d = f.difference
            sqnr = d.sqnr_db if d.sqnr_db is not None else float("inf")
            rows.append(f"'{f.role.name}' ({f.role.kind}): SQNR {sqnr:.1f} dB, max error "
                        f"{d.max_rel:.2%} of its range")
            if f.degenerate:
                verdicts.append((Verdict.WARN, f"degenerate: the inputs do not exercise the model "
                                               f"('{f.role.name}' is {f.degenerate})"))
            elif sqnr >= cls.PASS_DB:
                verdicts.append((Verdict.PASS, f"every output within {cls.PASS_DB:g} dB"))
            elif sqnr < cls.FAIL_DB:
                verdicts.append((Verdict.FAIL, f"'{f.role.name}' below {cls.FAIL_DB:g} dB"))
            else:
                verdicts.append((Verdict.WARN, f"'{f.role.name}' between {cls.FAIL_DB:g} and {cls.PASS_DB:g} dB"))
        order = [Verdict.FAIL, Verdict.WARN, Verdict.PASS]
        verdict, why = min(verdicts, key=lambda v: order.index(v[0]))
        worst = min((f.difference.sqnr_db if f.difference.sqnr_db is not None else float("inf")) for f in m.outputs)
        return cls.result(model, device, verdict, None if worst == float("inf") else round(worst, 2),
                          f"{why}: " + "; ".join(rows), simulated=m.simulated,
                          details={"outputs": [f.difference for f in m.outputs]})
