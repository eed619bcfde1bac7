"""The rules that decide whether tonight regressed against last night, each saying in words
why it fired.

Latency: a night is slower only when the slowdown is *significant*. The ratio of medians
(tonight / last night) gets a bootstrap interval from the two nights' raw samples, resampled
independently; it is a regression when the whole interval lies above ``1 + tolerance``. A
point estimate past the tolerance with an interval that reaches below it is noise, and is
reported as such. Reports without raw samples fall back to the point estimate, and say so.

Verdicts: a verdict that got worse (SKIP aside) is a regression, as it always was."""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

from qat_harness.reporting.intervals import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, unpaired_ratio_of_medians
from qat_harness.results import SEVERITY

DEFAULT_TOLERANCE = 0.10


class Outcome(str, enum.Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    WITHIN_NOISE = "within noise"     # the point estimate moved past the tolerance, not significantly
    UNCHANGED = "unchanged"


class LatencyRule(str, enum.Enum):
    INTERVAL = "bootstrap interval"   # both nights kept their raw samples
    POINT = "point estimate"          # one night has only its summary: the noise is unknown


@dataclasses.dataclass(frozen=True)
class LatencyFinding:
    ratio: float                      # current median / baseline median
    ci_low: float | None
    ci_high: float | None
    rule: LatencyRule
    outcome: Outcome
    tolerance: float
    confidence: float

    @property
    def change(self) -> float:
        return self.ratio - 1

    def explain(self) -> str:
        """E.g. 'median +14%, 95% CI [+11%, +17%] above the 10% tolerance'."""
        where = {Outcome.REGRESSION: f"above the {self.tolerance:.0%} tolerance",
                 Outcome.IMPROVEMENT: f"below the -{self.tolerance:.0%} tolerance",
                 Outcome.WITHIN_NOISE: f"reaches inside the {self.tolerance:.0%} tolerance: not significant",
                 Outcome.UNCHANGED: f"within the {self.tolerance:.0%} tolerance"}[self.outcome]
        if self.rule is LatencyRule.POINT:
            return f"median {self.change:+.0%} {where} (point estimate: no raw samples to judge the noise)"
        return (f"median {self.change:+.0%}, {self.confidence:.0%} CI [{self.ci_low - 1:+.0%}, "
                f"{self.ci_high - 1:+.0%}] {where}")


@dataclasses.dataclass(frozen=True)
class LatencyGate:
    tolerance: float = DEFAULT_TOLERANCE
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    def judge_samples(self, baseline_ms: Sequence[float], current_ms: Sequence[float]) -> LatencyFinding:
        interval = unpaired_ratio_of_medians(current_ms, baseline_ms, self.confidence,
                                             self.resamples, self.seed)
        if not interval.known:
            return self.judge_medians(float(_median(baseline_ms)), float(_median(current_ms)))
        if interval.low > 1 + self.tolerance:
            outcome = Outcome.REGRESSION
        elif interval.high < 1 - self.tolerance:
            outcome = Outcome.IMPROVEMENT
        elif abs(interval.estimate - 1) > self.tolerance:
            outcome = Outcome.WITHIN_NOISE
        else:
            outcome = Outcome.UNCHANGED
        return LatencyFinding(interval.estimate, interval.low, interval.high, LatencyRule.INTERVAL,
                              outcome, self.tolerance, self.confidence)

    def judge_medians(self, baseline_median_ms: float, current_median_ms: float) -> LatencyFinding:
        ratio = current_median_ms / baseline_median_ms
        if ratio > 1 + self.tolerance:
            outcome = Outcome.REGRESSION
        elif ratio < 1 - self.tolerance:
            outcome = Outcome.IMPROVEMENT
        else:
            outcome = Outcome.UNCHANGED
        return LatencyFinding(ratio, None, None, LatencyRule.POINT, outcome, self.tolerance,
                              self.confidence)


def _median(values: Sequence[float]) -> float:
    import numpy as np

    return float(np.median(np.asarray(values, dtype=float)))


@dataclasses.dataclass(frozen=True)
class VerdictFinding:
    baseline: str
    current: str
    outcome: Outcome

    def explain(self) -> str:
        if self.current == "absent":
            return "claim no longer reported"
        return f"verdict {self.baseline} -> {self.current}"


def judge_verdicts(baseline: str, current: str) -> VerdictFinding:
    """'absent' stands for a claim one of the two reports does not have."""
    if baseline in SEVERITY and current in SEVERITY:
        if SEVERITY[current] > SEVERITY[baseline] and current != "SKIP":
            return VerdictFinding(baseline, current, Outcome.REGRESSION)
        if SEVERITY[current] < SEVERITY[baseline]:
            return VerdictFinding(baseline, current, Outcome.IMPROVEMENT)
    elif baseline != "absent" and current == "absent":
        return VerdictFinding(baseline, current, Outcome.REGRESSION)
    return VerdictFinding(baseline, current, Outcome.UNCHANGED)
