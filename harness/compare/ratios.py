"""The int8/float latency ratio of one night compared across nights: both files are timed in
the same ABBA blocks, so a busy machine slows both and the ratio stays where the files put it.
It is judged before the absolute medians, and still on a night whose machine was busy."""
from __future__ import annotations

import dataclasses
import math

from qat_harness.compare.gates import MIN_NOISE_PAIRS, LatencyGate, NightNoise, Outcome, widen
from qat_harness.record.tree import DeviceSection
from qat_harness.stats import RatioCI

#: the speed-ups a device section keeps (float / file), by the kind the history stores them as
KINDS = ("qat_vs_float", "ptq_vs_float")


@dataclasses.dataclass(frozen=True)
class RatioRow:
    model: str
    device: str
    kind: str                         # 'qat_vs_float' or 'ptq_vs_float'
    baseline: float                   # int8 / float latency, last night
    current: float                    # int8 / float latency, tonight
    change: float                     # current / baseline - 1
    ci_low: float | None              # of current / baseline
    ci_high: float | None
    noise_nights: int
    outcome: Outcome
    tolerance: float

    def explain(self) -> str:
        interval = ("" if self.ci_low is None or self.ci_high is None else
                    f", 95% CI [{self.ci_low - 1:+.0%}, {self.ci_high - 1:+.0%}]")
        noise = f", night-to-night noise of {self.noise_nights} pairs included" if self.noise_nights else ""
        return (f"int8/float latency ratio ({self.kind}) {self.baseline:.3f} -> {self.current:.3f}: "
                f"{self.change:+.0%}{interval}{noise} ({self.outcome.value}, tolerance {self.tolerance:.0%})")


def speedup(section: DeviceSection | None, kind: str) -> RatioCI | None:
    if section is None:
        return None
    return section.speedup_qat_vs_float if kind == "qat_vs_float" else section.speedup_ptq_vs_float


def compare_ratio(gate: LatencyGate, model: str, device: str, kind: str, baseline: RatioCI | None,
                  current: RatioCI | None, earlier_speedups: list[float] | None = None) -> RatioRow | None:
    """``baseline`` and ``current`` are the nights' speed-ups (float / int8) with their paired
    intervals; the row is about int8 / float, so that slower int8 reads as a positive change.
    The two nights' intervals add in quadrature on the log scale, and the spread the earlier
    nights' speed-ups showed (when there are enough of them) is added as the latency gate does."""
    if baseline is None or current is None or baseline.ratio <= 0 or current.ratio <= 0:
        return None
    change = baseline.ratio / current.ratio
    low = high = None
    if baseline.ci_low and baseline.ci_high and current.ci_low and current.ci_high:
        lb, hb = math.log(baseline.ci_low), math.log(baseline.ci_high)
        lc, hc = math.log(current.ci_low), math.log(current.ci_high)
        b, c = math.log(baseline.ratio), math.log(current.ratio)
        log_change = b - c
        below = math.hypot(b - lb, hc - c)
        above = math.hypot(hb - b, c - lc)
        low, high = math.exp(log_change - below), math.exp(log_change + above)
    pairs = 0
    noise = NightNoise.from_medians(earlier_speedups or [])
    if low is not None and high is not None and noise is not None and noise.pairs >= MIN_NOISE_PAIRS:
        low, high = widen(change, low, high, noise.sd_log_ratio, gate.confidence)
        pairs = noise.pairs
    return RatioRow(model, device, kind, 1 / baseline.ratio, 1 / current.ratio, change - 1, low, high, pairs,
                    gate.judge_ratio(change, low, high), gate.tolerance)
