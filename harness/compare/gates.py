"""The rules that decide whether tonight regressed against last night, each saying in words
why it fired.

Latency: a night is slower only when the slowdown is *significant*. The ratio of medians
(tonight / last night) gets a bootstrap interval from the two nights' raw samples, resampled
independently; it is a regression when the whole interval lies above ``1 + tolerance``. A
point estimate past the tolerance with an interval that reaches below it is noise, and is
reported as such. Reports without raw samples fall back to the point estimate, and say so.

Night-to-night noise: the raw samples of one night only know that night's noise, while on a
shared machine whole nights shift (measured here: the same model's median moved by -20% to +33%
between runs). Given the earlier nights' medians (``night_to_night_sd``, from the history), the
gate widens the interval by that spread; without enough history it says the spread is unknown.

Verdicts: a verdict that got worse (SKIP aside) is a regression, as it always was."""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

from qat_harness.compare.intervals import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, unpaired_ratio_of_medians
from qat_harness.results import SEVERITY

DEFAULT_TOLERANCE = 0.10
MIN_NOISE_PAIRS = 4     # consecutive earlier nights needed before their spread is trusted


class Outcome(str, enum.Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    WITHIN_NOISE = "within noise"     # the point estimate moved past the tolerance, not significantly
    UNCHANGED = "unchanged"
    MACHINE_BUSY = "machine busy"     # one of the nights timed on a busy machine: not judged (a WARN)
    NOT_CONFIRMED = "not confirmed"   # looked regressed; neither its file nor its runtime explains it


class LatencyRule(str, enum.Enum):
    INTERVAL_WITH_HISTORY = "bootstrap interval + night-to-night noise"   # raw samples and earlier nights
    INTERVAL = "bootstrap interval"   # both nights kept their raw samples; night-to-night noise unknown
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
    noise_nights: int = 0            # earlier night pairs whose spread widened the interval

    @property
    def change(self) -> float:
        return self.ratio - 1

    def explain(self) -> str:
        """E.g. 'median +14%, 95% CI [+11%, +17%] above the 10% tolerance'."""
        where = {Outcome.REGRESSION: f"above the {self.tolerance:.0%} tolerance",
                 Outcome.IMPROVEMENT: f"below the -{self.tolerance:.0%} tolerance",
                 Outcome.WITHIN_NOISE: f"reaches inside the {self.tolerance:.0%} tolerance: not significant",
                 Outcome.UNCHANGED: f"within the {self.tolerance:.0%} tolerance",
                 Outcome.MACHINE_BUSY: "not judged: the machine was busy",
                 Outcome.NOT_CONFIRMED: "not confirmed by re-timing"}[self.outcome]
        if self.rule is LatencyRule.POINT:
            return f"median {self.change:+.0%} {where} (point estimate: no raw samples to judge the noise)"
        assert self.ci_low is not None and self.ci_high is not None  # every rule but POINT has an interval
        noise = (f" (night-to-night noise of {self.noise_nights} earlier night pairs included)"
                 if self.rule is LatencyRule.INTERVAL_WITH_HISTORY else
                 f" (this night's noise only: fewer than {MIN_NOISE_PAIRS} earlier night pairs)")
        return (f"median {self.change:+.0%}, {self.confidence:.0%} CI [{self.ci_low - 1:+.0%}, "
                f"{self.ci_high - 1:+.0%}] {where}{noise}")


@dataclasses.dataclass(frozen=True)
class LatencyGate:
    tolerance: float = DEFAULT_TOLERANCE
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    def judge_samples(self, baseline_ms: Sequence[float], current_ms: Sequence[float],
                      night_to_night: "NightNoise | None" = None) -> LatencyFinding:
        interval = unpaired_ratio_of_medians(current_ms, baseline_ms, self.confidence,
                                             self.resamples, self.seed)
        if not interval.known:
            return self.judge_medians(float(_median(baseline_ms)), float(_median(current_ms)))
        low, high, rule, pairs = interval.low, interval.high, LatencyRule.INTERVAL, 0
        assert low is not None and high is not None  # interval.known
        if night_to_night is not None and night_to_night.pairs >= MIN_NOISE_PAIRS:
            low, high = widen(interval.estimate, low, high, night_to_night.sd_log_ratio, self.confidence)
            rule, pairs = LatencyRule.INTERVAL_WITH_HISTORY, night_to_night.pairs
        return LatencyFinding(interval.estimate, low, high, rule, self.outcome(interval.estimate, low, high),
                              self.tolerance, self.confidence, pairs)

    def outcome(self, ratio: float, low: float, high: float) -> Outcome:
        """The rule on an interval of current / baseline."""
        if low > 1 + self.tolerance:
            return Outcome.REGRESSION
        if high < 1 - self.tolerance:
            return Outcome.IMPROVEMENT
        if abs(ratio - 1) > self.tolerance:
            return Outcome.WITHIN_NOISE
        return Outcome.UNCHANGED

    def judge_ratio(self, ratio: float, low: float | None, high: float | None) -> Outcome:
        """The rule on an interval of current / baseline; without one, on the point estimate."""
        if low is None or high is None:
            return self.judge_medians(1.0, ratio).outcome
        return self.outcome(ratio, low, high)

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


@dataclasses.dataclass(frozen=True)
class NightNoise:
    """How much one model's median moves from one night to the next with nothing changed: the
    robust spread (MAD x 1.4826) of log(median_i / median_i-1) over earlier consecutive nights."""
    sd_log_ratio: float
    pairs: int

    @classmethod
    def from_medians(cls, medians: Sequence[float]) -> "NightNoise | None":
        import numpy as np

        m = np.asarray([v for v in medians if v and v > 0], dtype=float)
        if m.size < 2:
            return None
        log_ratios = np.diff(np.log(m))
        mad = float(np.median(np.abs(log_ratios - np.median(log_ratios))))
        return cls(1.4826 * mad, int(log_ratios.size))


def widen(ratio: float, low: float, high: float, sd_log: float, confidence: float) -> tuple[float, float]:
    """The bootstrap interval and the night-to-night spread added in quadrature, on the log scale."""
    import math

    from scipy import stats

    z = float(stats.norm.ppf(0.5 + confidence / 2))
    extra = z * sd_log
    log_r = math.log(ratio)
    below = math.hypot(log_r - math.log(low), extra)
    above = math.hypot(math.log(high) - log_r, extra)
    return math.exp(log_r - below), math.exp(log_r + above)


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
