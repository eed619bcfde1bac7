"""The nightly history as text for a terminal (``qat-harness history DIR``): the nights with
their machines and what the nightly gate said of each (BUSY machine, CONFIRMED regression with
its cause), the latest medians against the first and the previous night, the verdict changes
and what changed in the environment."""
from __future__ import annotations

from typing import TYPE_CHECKING

from qat_harness import history
from qat_harness.writers.plots import ordered_variants
from qat_harness.writers.text import visible
from qat_harness.writers.trends import Trends, build_trends

if TYPE_CHECKING:
    from qat_harness.writers.history_html import NightMark


def history_text(db_path: history.Where) -> str:
    from qat_harness.writers.history_html import night_marks

    trends = build_trends(history.load(db_path))
    return render_trends_text(trends, night_marks(db_path, trends))


def gate_mark(mark: NightMark | None) -> str:
    """E.g. 'CONFIRMED REGRESSION digits_cnn on cpu (the model file); BUSY' or '-'."""
    if mark is None:
        return "-"
    parts = [f"CONFIRMED REGRESSION {f.model} on {f.device} ({f.cause})" for f in mark.confirmed]
    parts += ["BUSY"] if mark.busy else []
    parts += [f"not confirmed: {f.model} on {f.device}" for f in mark.not_confirmed]
    return "; ".join(parts) or "-"


def render_trends_text(trends: Trends, marks: dict[int, NightMark] | None = None) -> str:
    from tabulate import tabulate

    if not trends.nights:
        return "history: no nights recorded yet"
    lines = [f"{len(trends.nights)} night(s), {trends.night_label(0)} .. {trends.night_label(len(trends.nights) - 1)}"]
    nights = [[i, trends.night_label(i), visible(n.status or "-"), visible(n.environment.headline()),
               visible(gate_mark((marks or {}).get(i)))] for i, n in enumerate(trends.nights)]
    lines.append(tabulate(nights, headers=["#", "night", "status", "machine and libraries", "nightly gate"]))
    rows = []
    for t in trends.devices:
        for variant in ordered_variants(t.latency_ms):
            points = t.latency_ms[variant]
            last = points[-1]
            prev = points[-2] if len(points) > 1 else None
            device = visible(t.device) + (" (simulated)" if t.simulated else "")
            rows.append([visible(t.model), device, visible(variant),
                         f"{points[0].value:.3f}", f"{last.value:.3f}",
                         f"{last.value / prev.value - 1:+.1%}" if prev else "-", len(points)])
    if rows:
        lines.append(tabulate(rows, headers=["model", "device", "variant", "first median ms",
                                             "latest median ms", "vs previous", "nights"]))
    for t in trends.devices:
        qat = t.speedup.get("qat_vs_float")
        if qat:
            last = qat[-1]
            ci = f" [{last.low:.2f}-{last.high:.2f}]" if last.low is not None else ""
            lines.append(f"speed-up float/QAT int8 {visible(t.model)} on {visible(t.device)}: {last.value:.2f}x{ci} "
                         f"(first night {qat[0].value:.2f}x)")
    if trends.verdict_changes:
        lines.append("verdict changes:")
        lines += [f"  {trends.night_label(c.night)}  {c.claim} {visible(c.model)} {visible(c.device)}: "
                  f"{c.before} -> {c.after}"
                  for c in trends.verdict_changes]
    else:
        lines.append("no verdict changed across these nights")
    for night, changes in sorted(trends.environment_changes.items()):
        lines.append(f"changed on {trends.night_label(night)}: " + visible("; ".join(changes)))
    return "\n".join(lines)
