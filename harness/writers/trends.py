"""The history as series across nights: per model and device the latency medians, speed-ups
and accuracies (each with its interval), per claim the verdict of every night, and where the
machine or a library changed. ``writers.history_html`` draws these; ``writers.history_text``
prints them."""
from __future__ import annotations

import dataclasses
from collections import defaultdict

from qat_harness.compare.machine import environment_changes
from qat_harness.history import History, Night
from qat_harness.stats import wilson_interval


@dataclasses.dataclass(frozen=True)
class Point:
    night: int            # index into Trends.nights
    value: float
    low: float | None = None
    high: float | None = None


@dataclasses.dataclass
class DeviceTrend:
    model: str
    device: str
    simulated: bool = False
    latency_ms: dict[str, list[Point]] = dataclasses.field(default_factory=dict)   # variant ->
    speedup: dict[str, list[Point]] = dataclasses.field(default_factory=dict)      # 'qat_vs_float' ->
    top1: dict[str, list[Point]] = dataclasses.field(default_factory=dict)         # variant ->


@dataclasses.dataclass(frozen=True)
class VerdictChange:
    night: int
    claim: str
    model: str
    device: str
    before: str
    after: str


@dataclasses.dataclass(frozen=True)
class ClaimTimeline:
    claim: str
    model: str
    device: str
    simulated: bool
    verdicts: list[str | None]     # one per night; None where the night did not judge it


@dataclasses.dataclass
class Trends:
    nights: list[Night]
    devices: list[DeviceTrend]
    timelines: list[ClaimTimeline]
    verdict_changes: list[VerdictChange]
    environment_changes: dict[int, list[str]]   # night index -> what changed since the night before

    def night_label(self, index: int) -> str:
        return self.nights[index].started[:16].replace("T", " ")


def build_trends(history: History) -> Trends:
    index = {night.run_id: i for i, night in enumerate(history.nights)}
    devices: dict[tuple[str, str], DeviceTrend] = {}

    def trend(model: str, device: str) -> DeviceTrend:
        return devices.setdefault((model, device), DeviceTrend(model, device))

    for row in history.latency:
        if row.run_id in index and row.median_ms is not None:
            trend(row.model, row.device).latency_ms.setdefault(row.variant, []).append(
                Point(index[row.run_id], row.median_ms, row.median_ci_low, row.median_ci_high))
    for speedup in history.speedups:
        if speedup.run_id in index:
            trend(speedup.model, speedup.device).speedup.setdefault(speedup.kind, []).append(
                Point(index[speedup.run_id], speedup.ratio, speedup.ci_low, speedup.ci_high))
    for accuracy in history.accuracy:
        if accuracy.run_id in index:
            n = accuracy.n
            interval = wilson_interval(round(accuracy.top1 * n), n) if n else None
            trend(accuracy.model, accuracy.device).top1.setdefault(accuracy.variant, []).append(
                Point(index[accuracy.run_id], accuracy.top1, interval.ci_low if interval else None,
                      interval.ci_high if interval else None))

    grid: dict[tuple[str, str, str], list[str | None]] = defaultdict(lambda: [None] * len(history.nights))
    simulated: dict[tuple[str, str, str], bool] = {}
    for claim in history.claims:
        if claim.run_id in index:
            key = (claim.claim, claim.model, claim.device)
            grid[key][index[claim.run_id]] = claim.verdict
            simulated[key] = simulated.get(key, False) or claim.simulated
            if (claim.model, claim.device) in devices:
                devices[(claim.model, claim.device)].simulated |= claim.simulated
    timelines = [ClaimTimeline(c, m, d, simulated[(c, m, d)], grid[(c, m, d)]) for c, m, d in sorted(grid)]
    return Trends(nights=list(history.nights), devices=sorted(devices.values(), key=lambda t: (t.model, t.device)),
                  timelines=timelines, verdict_changes=_verdict_changes(timelines),
                  environment_changes=_environment_changes(history.nights))


def _verdict_changes(timelines: list[ClaimTimeline]) -> list[VerdictChange]:
    changes = []
    for t in timelines:
        last = None
        for night, verdict in enumerate(t.verdicts):
            if verdict is None:
                continue
            if last is not None and verdict != last:
                changes.append(VerdictChange(night, t.claim, t.model, t.device, last, verdict))
            last = verdict
    return sorted(changes, key=lambda c: (c.night, c.model, c.device, c.claim))


def _environment_changes(nights: list[Night]) -> dict[int, list[str]]:
    changes = {}
    for i in range(1, len(nights)):
        lines = environment_changes(nights[i - 1].environment, nights[i].environment)
        if lines:
            changes[i] = lines
    return changes
