"""``history.html``: the nightly history as trends, one self-contained page. Per model and
device a figure of latency medians (with their intervals), speed-ups against the documented
band and accuracy across nights; per claim a row of verdicts, one cell a night; and every
night's machine and library versions, with a marked line on the charts where they changed."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from qat_harness import history
from qat_harness.claims import CpuLatency
from qat_harness.devices.base import Role
from qat_harness.record.folder import write_atomically
from qat_harness.writers import plots
from qat_harness.writers.templating import render
from qat_harness.writers.trends import ClaimTimeline, DeviceTrend, Trends, VerdictChange, build_trends

HOST_CPU_ROLE = Role.HOST_CPU.value   # only these devices' speed-up is judged against the documented band


@dataclasses.dataclass(frozen=True)
class TrendView:
    trend: DeviceTrend
    plot_uri: str


@dataclasses.dataclass(frozen=True)
class HistorySummary:
    nights: int
    series: int                          # model x device trends drawn
    verdict_changes: list[VerdictChange]
    environment_changes: dict[int, list[str]]
    path: Path
    trends: Trends                       # what was drawn, for a text rendering of the same

    def text(self) -> str:
        return (f"history: {self.nights} night(s), {self.series} model/device trend(s), "
                f"{len(self.verdict_changes)} verdict change(s), {len(self.environment_changes)} "
                f"environment change(s) -> {self.path}")


def render_history(db_path: Path, out_html: Path) -> HistorySummary:
    """Draw the history in ``db_path`` to ``out_html``. A missing or unreadable history is a
    one-line ``UsageError`` naming the file."""
    trends = build_trends(history.load(Path(db_path)))
    views = [TrendView(t, plots.trend_figure(_figure_data(t, trends))) for t in trends.devices]
    out_html = Path(out_html)
    write_atomically(out_html, render("history.html.j2", trends=trends, views=views,
                                      timelines_by_model=_timelines_by_model(trends.timelines),
                                      db_name=Path(db_path).name))
    return HistorySummary(len(trends.nights), len(views), trends.verdict_changes,
                          trends.environment_changes, out_html, trends)


def _figure_data(trend: DeviceTrend, trends: Trends) -> plots.TrendFigureData:
    roles = {n.environment.roles.get(trend.device) for n in trends.nights} - {None}
    band = CpuLatency.SPEEDUP_RANGE if roles == {HOST_CPU_ROLE} else None
    changes = {night: _short(lines) for night, lines in trends.environment_changes.items()}
    return plots.TrendFigureData(night_labels=[trends.night_label(i) for i in range(len(trends.nights))],
                                 latency_ms=trend.latency_ms, speedup=trend.speedup, speedup_band=band,
                                 top1=trend.top1, changes=changes)


def _short(lines: list[str]) -> str:
    return lines[0] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")


def _timelines_by_model(timelines: list[ClaimTimeline]) -> dict[str, list[ClaimTimeline]]:
    grouped: dict[str, list[ClaimTimeline]] = {}
    for t in timelines:
        grouped.setdefault(t.model, []).append(t)
    return grouped
