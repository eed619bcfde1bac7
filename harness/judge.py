"""Judge: which claims one model on one device is judged on, from what was measured there.
The claims themselves (``qat_harness.claims``) are pure; this module picks the claim, the
measurement and the SKIP or ERROR that stands in when a measurement is missing."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from qat_harness import claims
from qat_harness.devices.base import Delegation, Role
from qat_harness.measure.agreement import Fidelity, TopOne
from qat_harness.measure.difference import OutputDifference
from qat_harness.measure.latency import LatencyMeasurement
from qat_harness.record.tree import BuildRecord
from qat_harness.results import ClaimResult
from qat_harness.stats import Proportion
from qat_harness.variants import Variant


@dataclasses.dataclass(frozen=True)
class Subject:
    """The model and device a verdict is about."""
    model: str
    device: str
    role: Role
    simulated: bool
    under_test: str                       # the variant the claims judge
    label: str = "int8"                   # how its file reads (its scheme: 'int8', 'uint8', 'fp16-weights', ...)
    float_file: bool = False              # the file under test is itself a float model

    @property
    def no_reference(self) -> str:
        """Why a claim that compares with float cannot be judged here."""
        if self.float_file:
            return (f"the file is a {self.label} model: nothing quantized to compare with it "
                    "(--recipes quantizes it and compares)")
        return claims.NO_FLOAT_REFERENCE


def reference_agreement(s: Subject, differences: tuple[OutputDifference, ...], not_run: str | None,
                        oracle_error: str | None) -> ClaimResult:
    return claims.ReferenceAgreement.judge(s.model, s.device, claims.VersusReference(
        s.role, differences, not_run, oracle_error, s.simulated))


def outputs_against_float(s: Subject, top: TopOne | None, fidelity: list[Fidelity] | None, missing: str | None,
                          accuracy_skip: str | None, build: BuildRecord | None) -> list[ClaimResult]:
    """A1, A2 on the class-score outputs and A3 on every other one. ``missing``: why float or
    the file under test has no outputs here; ``fidelity`` None: there is no float file."""
    trio = (claims.Accuracy, claims.Agreement, claims.Fidelity)
    if missing:
        return [c.error(s.model, s.device, missing) for c in trio]
    if accuracy_skip:
        return [c.skip(s.model, s.device, accuracy_skip) for c in trio]
    a3 = (claims.Fidelity.skip(s.model, s.device, s.no_reference) if fidelity is None else
          claims.Fidelity.judge(s.model, s.device, claims.OutputFidelity(tuple(fidelity), s.simulated)))
    if top is None:
        why = "the model has no class-score output (A3 judges its outputs)"
        return [claims.Accuracy.skip(s.model, s.device, why), claims.Agreement.skip(s.model, s.device, why), a3]
    if top.agreement is None:
        a2 = claims.Agreement.skip(s.model, s.device, s.no_reference)
    else:
        a2 = claims.Agreement.judge(s.model, s.device, claims.TopOneAgreement(
            top.agreement, top.ptq_agreement, unit=top.unit, simulated=s.simulated, degenerate=top.degenerate))
    return [_accuracy(s, top, build), a2, a3]


def _accuracy(s: Subject, top: TopOne, build: BuildRecord | None) -> ClaimResult:
    if top.unit is not None:
        return claims.Accuracy.skip(s.model, s.device, "the model outputs class ids per element, not one class "
                                                       "per input")
    if top.accuracy is None:
        return claims.Accuracy.skip(s.model, s.device, "the dataset has no labels")
    if top.paired is None or top.baseline is None or s.under_test not in top.paired:
        mine = top.accuracy[s.under_test]
        return claims.Accuracy.skip(s.model, s.device, f"{s.no_reference}: the {s.label} file's "
                                                       f"top-1 is {_interval(mine)}")
    context: dict[str, object] = {"float_keras_top1": build.float_keras_accuracy if build else None,
                                  "qat_keras_top1": build.qat_keras_accuracy if build else None,
                                  "float_ft_keras_top1": build.float_ft_keras_accuracy if build else None,
                                  "ptq_int8_top1": (top.accuracy[Variant.PTQ_INT8].rate
                                                    if Variant.PTQ_INT8 in top.accuracy else None),
                                  "paired_vs_baseline": top.paired}
    if build and build.control_arm:
        context["control_arm"] = build.control_arm.what
    rates = {v: p.rate for v, p in top.accuracy.items() if p.rate is not None}
    return claims.Accuracy.judge(s.model, s.device, claims.PairedAccuracy(
        rates, top.baseline, s.under_test, top.paired[s.under_test], context, s.simulated))


def _interval(p: Proportion) -> str:
    return (f"{p.rate:.2%} [95% CI {p.ci_low:.2%} to {p.ci_high:.2%}] on {p.n} examples"
            if p.rate is not None and p.ci_low is not None and p.ci_high is not None else "not measured")


def latency(s: Subject, measured: LatencyMeasurement | None, unavailable: str | None,
            delegation: Mapping[str, Delegation], cpu_flags: list[str] | None, on_host: bool
            ) -> tuple[ClaimResult, claims.Ceiling | None]:
    """C2 or C3, whichever judges a device of this role, and the hardware's ceiling it used."""
    claim = claims.latency_claim(s.role)
    if claim is None:
        return claims.CpuLatency.skip_role(s.model, s.device, s.role), None
    if unavailable or measured is None:
        return claim.error(s.model, s.device, unavailable or "not timed"), None
    if measured.speedup is None:
        median = measured.summaries[s.under_test].median_ms
        return claim.skip(s.model, s.device, f"{s.no_reference} ({s.label} latency measured: "
                                             f"median {median:.3f} ms)"), None
    ceiling = claims.ceiling(cpu_flags if on_host else None,
                             {v: delegation.get(v) for v in (Variant.FLOAT.value, s.under_test)},
                             accelerator=s.role is Role.ACCELERATOR)
    return claim.judge(s.model, s.device, claims.SpeedUp(
        measured.speedup, measured.summaries[Variant.FLOAT], measured.summaries[s.under_test],
        delegation.get(s.under_test), cpu_flags, ceiling, s.simulated or measured.bench.simulated)), ceiling
