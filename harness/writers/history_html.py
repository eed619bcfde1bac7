"""``history.html``: the nightly history as trends, one self-contained page. Per model and
device a figure of latency medians (with their intervals), speed-ups against the documented
band and accuracy across nights; per claim a row of verdicts, one cell a night; and every
night's machine and library versions, with a marked line on the charts where they changed.
Nights the gate found busy (their latency not judged) and nights with a confirmed regression
(with what changed: the model file or the runtime) are marked differently, in the table and in
the charts' night labels."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from qat_harness import history, history_store
from qat_harness.claims import CpuLatency
from qat_harness.compare import night_facts
from qat_harness.compare.night_facts import GateFinding
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
class NightMark:
    """What the nightly gate said of one night."""
    busy: list[str]                      # 'model on device: machine busy: ...'
    confirmed: list[GateFinding]         # regressions confirmed, with their cause
    not_confirmed: list[GateFinding]     # looked regressed, explained by the machine

    @property
    def suffix(self) -> str:
        """Appended to the night's label on the charts."""
        return (" REGRESSION" if self.confirmed else "") + (" busy" if self.busy else "")


NO_MARK = NightMark([], [], [])


@dataclasses.dataclass(frozen=True)
class HistorySummary:
    nights: int
    series: int                          # model x device trends drawn
    verdict_changes: list[VerdictChange]
    environment_changes: dict[int, list[str]]
    path: Path
    trends: Trends                       # what was drawn, for a text rendering of the same
    marks: dict[int, NightMark] = dataclasses.field(default_factory=dict)   # night index ->

    def text(self) -> str:
        return (f"history: {self.nights} night(s), {self.series} model/device trend(s), "
                f"{len(self.verdict_changes)} verdict change(s), {len(self.environment_changes)} "
                f"environment change(s) -> {self.path}")


def render_history(db_path: history.Where, out_html: Path) -> HistorySummary:
    """Draw the history in ``db_path`` to ``out_html``. A missing or unreadable history is a
    one-line ``UsageError`` naming the file."""
    trends = build_trends(history.load(db_path))
    marks = night_marks(db_path, trends)
    views = [TrendView(t, plots.trend_figure(_figure_data(t, trends, marks))) for t in trends.devices]
    out_html = Path(out_html)
    write_atomically(out_html, render("history.html.j2", trends=trends, views=views,
                                      timelines_by_model=_timelines_by_model(trends.timelines),
                                      db_name=history_store.locate(db_path).name, marks=marks, no_mark=NO_MARK))
    return HistorySummary(len(trends.nights), len(views), trends.verdict_changes,
                          trends.environment_changes, out_html, trends, marks)


def night_marks(db_path: night_facts.Where, trends: Trends) -> dict[int, NightMark]:
    """Night index -> what the gate said of it (nights it said nothing of are left out)."""
    kept = night_facts.marks(db_path)
    out = {}
    for i, night in enumerate(trends.nights):
        findings = kept.findings.get(night.run_id, [])
        busy = kept.busy.get(night.run_id, []) + [f"{f.model} on {f.device}: {f.text}" for f in findings
                                                  if f.kind == "busy"]
        mark = NightMark(list(dict.fromkeys(busy)), [f for f in findings if f.kind == "regression"],
                         [f for f in findings if f.kind == "not confirmed"])
        if mark != NO_MARK:
            out[i] = mark
    return out


def _figure_data(trend: DeviceTrend, trends: Trends, marks: dict[int, NightMark]) -> plots.TrendFigureData:
    roles = {n.environment.roles.get(trend.device) for n in trends.nights} - {None}
    band = CpuLatency.SPEEDUP_RANGE if roles == {HOST_CPU_ROLE} else None
    changes = {night: _short(lines) for night, lines in trends.environment_changes.items()}
    labels = [trends.night_label(i) + marks.get(i, NO_MARK).suffix for i in range(len(trends.nights))]
    return plots.TrendFigureData(night_labels=labels,
                                 latency_ms=trend.latency_ms, speedup=trend.speedup, speedup_band=band,
                                 top1=trend.top1, changes=changes)


def _short(lines: list[str]) -> str:
    return lines[0] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")


def _timelines_by_model(timelines: list[ClaimTimeline]) -> dict[str, list[ClaimTimeline]]:
    grouped: dict[str, list[ClaimTimeline]] = {}
    for t in timelines:
        grouped.setdefault(t.model, []).append(t)
    return grouped
