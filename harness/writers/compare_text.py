"""compare.txt and the console text of ``qat-harness compare``: a ``Comparison`` as text."""
from __future__ import annotations

from qat_harness.compare import Comparison, LatencyRow
from qat_harness.writers.text import visible


def render(result: Comparison) -> str:
    from tabulate import tabulate

    lines = [f"baseline {result.baseline_started}  vs  current {result.current_started}"]
    if not result.same_machine:
        lines.append("note: the two reports come from different CPUs; latency changes may be the machine's")
    if result.environment_changes:
        lines.append("changed since the baseline: " + visible("; ".join(result.environment_changes)))
    rows = [[r.claim, visible(r.model), visible(r.device) + (" (simulated)" if r.simulated else ""),
             r.baseline, r.current] for r in result.verdicts]
    lines.append(tabulate(rows, headers=["claim", "model", "device", "baseline", "current"]))
    if result.latency:
        lrows = [[visible(r.model), visible(r.device), visible(r.variant), _ms(r.baseline_ms), _ms(r.current_ms),
                  f"{r.change:+.1%}", _interval(r), r.outcome.value] for r in result.latency]
        lines.append(tabulate(lrows, headers=["model", "device", "variant", "baseline ms",
                                              "current ms", "change", "95% CI", "gate"]))
    lines.append(f"{len(result.regressions)} regression(s), {len(result.improvements)} "
                 f"improvement(s); latency gate: slower only when the whole {result.confidence:.0%} "
                 f"interval of the ratio of medians lies above +{result.latency_tolerance:.0%}")
    lines += [f"  REGRESSION {visible(r.model)} {visible(r.device)} {r.claim} [{r.rule}]: {visible(r.what)}"
              for r in result.regressions]
    lines += [f"  within noise (not a regression) {visible(r.model)} {visible(r.device)}: {visible(r.what)}"
              for r in result.within_noise]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(row: LatencyRow) -> str:
    if row.ci_low is None or row.ci_high is None:
        return "(no raw samples)"
    return f"[{row.ci_low - 1:+.1%}, {row.ci_high - 1:+.1%}]"
