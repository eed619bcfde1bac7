"""Compare two conformance reports (e.g. last night's and tonight's): verdicts that got worse,
latencies that are significantly slower (the rules are in ``compare.gates``), and what changed
on the machine in between. Every regression says which rule fired. ``writers.compare_text``
prints a ``Comparison``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from qat_harness.compare import load, ratios
from qat_harness.compare.gates import DEFAULT_TOLERANCE, LatencyGate, NightNoise, Outcome, judge_verdicts
from qat_harness.compare.load import MachineJudgement
from qat_harness.compare.machine import NightEnvironment, environment_changes
from qat_harness.compare.ratios import RatioRow
from qat_harness.record import codec
from qat_harness.record.tree import DeviceSection, RunReport
from qat_harness.results import ClaimResult

#: (model, device, variant) -> the medians of the nights before, oldest first
EarlierMedians = dict[tuple[str, str, str], list[float]]


@dataclasses.dataclass(frozen=True)
class VerdictRow:
    claim: str
    model: str
    device: str
    baseline: str                     # a verdict, or 'absent'
    current: str
    simulated: bool


@dataclasses.dataclass(frozen=True)
class LatencyRow:
    model: str
    device: str
    variant: str
    baseline_ms: float | None
    current_ms: float | None
    change: float
    ratio: float
    ci_low: float | None
    ci_high: float | None
    rule: str
    outcome: Outcome
    explanation: str


@dataclasses.dataclass(frozen=True)
class Finding:
    """A regression, an improvement or a change within noise, with the rule that fired."""
    claim: str                        # a claim id, or 'latency'
    model: str
    device: str
    what: str
    rule: str
    simulated: bool


@dataclasses.dataclass(frozen=True)
class Comparison:
    verdicts: list[VerdictRow]
    latency: list[LatencyRow]
    regressions: list[Finding]
    improvements: list[Finding]
    within_noise: list[Finding]
    same_machine: bool
    environment_changes: list[str]
    latency_tolerance: float
    confidence: float
    baseline_started: str
    current_started: str
    #: the int8/float latency ratio of each night, compared across nights (robust to load)
    ratios: list[RatioRow] = dataclasses.field(default_factory=list)
    #: latencies not judged because a night's machine was busy, and other WARNs of the gate
    warnings: list[Finding] = dataclasses.field(default_factory=list)
    #: (model, device) -> the machine during both nights' timing windows
    machine: dict[tuple[str, str], MachineJudgement] = dataclasses.field(default_factory=dict)


def compare(baseline: RunReport, current: RunReport, latency_tolerance: float = DEFAULT_TOLERANCE,
            confidence: float = 0.95, earlier_medians: EarlierMedians | None = None,
            earlier_speedups: EarlierMedians | None = None) -> Comparison:
    """``earlier_medians`` (``history.earlier_medians``) lets the latency gate allow for
    night-to-night noise, ``earlier_speedups`` ((model, device, kind) -> the speed-ups of the
    nights before) the int8/float ratio's. A device whose timing ran on a busy machine on
    either night has its medians shown but not judged (a warning saying why); its int8/float
    ratio, timed in the same blocks, is judged all the same."""
    old, new = _claims_by_key(baseline), _claims_by_key(current)
    verdicts: list[VerdictRow] = []
    regressions: list[Finding] = []
    improvements: list[Finding] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        finding = judge_verdicts(a.verdict.value if a else "absent", b.verdict.value if b else "absent")
        simulated = any(c.simulated for c in (a, b) if c is not None)
        verdicts.append(VerdictRow(*key, finding.baseline, finding.current, simulated))
        found = Finding(key[0], key[1], key[2], finding.explain(), "verdict", simulated)
        if finding.outcome is Outcome.REGRESSION:
            regressions.append(found)
        elif finding.outcome is Outcome.IMPROVEMENT:
            improvements.append(found)

    gate = LatencyGate(tolerance=latency_tolerance, confidence=confidence)
    latency: list[LatencyRow] = []
    within_noise: list[Finding] = []
    ratio_rows: list[RatioRow] = []
    warnings: list[Finding] = []
    machine: dict[tuple[str, str], MachineJudgement] = {}
    for model, m in current.models.items():
        for dev, d in m.devices.items():
            base_model = baseline.models.get(model)
            base_dev = base_model.devices.get(dev) if base_model else None
            judged = load.judge_nights(load.state_of(base_dev), load.state_of(d))
            machine[(model, dev)] = judged
            for kind in ratios.KINDS:
                ratio = ratios.compare_ratio(gate, model, dev, kind, ratios.speedup(base_dev, kind),
                                             ratios.speedup(d, kind), (earlier_speedups or {}).get((model, dev, kind)))
                if ratio is None:
                    continue
                ratio_rows.append(ratio)
                found = Finding("latency", model, dev, ratio.explain(), "int8/float ratio", d.simulated)
                {Outcome.REGRESSION: regressions, Outcome.IMPROVEMENT: improvements,
                 Outcome.WITHIN_NOISE: within_noise}.get(ratio.outcome, []).append(found)
            for variant in d.latency or {}:
                noise = NightNoise.from_medians((earlier_medians or {}).get((model, dev, variant), []))
                row = _latency_row(gate, model, dev, variant, base_dev, d, noise)
                if row is None:
                    continue
                if judged.busy and row.outcome is not Outcome.UNCHANGED:
                    row = dataclasses.replace(row, outcome=Outcome.MACHINE_BUSY,
                                              explanation=f"{row.explanation}; {judged.text()}")
                latency.append(row)
                found = Finding("latency", model, dev, f"{variant}: {row.explanation}", f"latency {row.rule}",
                                d.simulated)
                {Outcome.REGRESSION: regressions, Outcome.IMPROVEMENT: improvements,
                 Outcome.WITHIN_NOISE: within_noise, Outcome.MACHINE_BUSY: warnings}.get(row.outcome, []).append(found)

    env_before, env_after = NightEnvironment.from_report(baseline), NightEnvironment.from_report(current)
    return Comparison(verdicts, latency, regressions, improvements, within_noise,
                      env_before.cpu == env_after.cpu, environment_changes(env_before, env_after),
                      latency_tolerance, confidence, baseline.started, current.started,
                      ratio_rows, warnings, machine)


def _claims_by_key(run: RunReport) -> dict[tuple[str, str, str], ClaimResult]:
    return {(c.id, c.model, c.device): c for c in run.claims}


def _latency_row(gate: LatencyGate, model: str, device: str, variant: str, base_dev: DeviceSection | None,
                 cur_dev: DeviceSection, noise: NightNoise | None) -> LatencyRow | None:
    b = (base_dev.latency or {}).get(variant) if base_dev else None
    s = (cur_dev.latency or {}).get(variant)
    b_raw = (base_dev.latency_raw_ms or {}).get(variant) if base_dev else None
    s_raw = (cur_dev.latency_raw_ms or {}).get(variant)
    b_median, s_median = b.median_ms if b else None, s.median_ms if s else None
    if b_raw and s_raw and min(b_raw) > 0 and min(s_raw) > 0:
        finding = gate.judge_samples(b_raw, s_raw, noise)
    elif b_median and b_median > 0 and s_median and s_median > 0:
        finding = gate.judge_medians(b_median, s_median)
    else:
        return None
    return LatencyRow(model, device, variant, b_median, s_median, finding.change, finding.ratio,
                      finding.ci_low, finding.ci_high, finding.rule.value, finding.outcome, finding.explain())


def compare_files(baseline: Path, current: Path | RunReport, latency_tolerance: float = DEFAULT_TOLERANCE,
                  confidence: float = 0.95, earlier_medians: EarlierMedians | None = None,
                  earlier_speedups: EarlierMedians | None = None) -> Comparison:
    """Two reports read through the codec (``current`` may be the run's own report, typed)."""
    now = current if isinstance(current, RunReport) else codec.load(current)
    return compare(codec.load(baseline), now, latency_tolerance, confidence, earlier_medians, earlier_speedups)
