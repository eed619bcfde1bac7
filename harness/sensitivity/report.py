"""sensitivity.md and sensitivity.json of one model."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from qat_harness.sensitivity.deploy import FIXED, FULL, DeviceCost
from qat_harness.sensitivity.measure import FIDELITY, TaskMetric
from qat_harness.sensitivity.service import FixedModel, SensitivityResult


def _db(value: float | None) -> str:
    return "exact" if value is None else f"{value:.1f} dB"


def _metric(m: TaskMetric | None) -> str:
    return "not measured (budget)" if m is None else m.headline


def gain(full: TaskMetric, fixed: TaskMetric) -> str:
    """What keeping the layers in float recovers, in the task's own unit."""
    if full.kind == FIDELITY:
        if fixed.sqnr_db is None or full.sqnr_db is None:
            return "exact" if fixed.sqnr_db is None else f"{fixed.sqnr_db:.1f} dB"
        return f"{fixed.sqnr_db - full.sqnr_db:+.1f} dB"
    if fixed.accuracy is not None and full.accuracy is not None:
        return f"{100 * (fixed.accuracy - full.accuracy):+.1f} points"
    return f"{100 * ((fixed.agreement or 0) - (full.agreement or 0)):+.1f} points of agreement"


def cost_line(fixed: FixedModel, cost: DeviceCost) -> str:
    """``keep `dense` float: +0.9 points, 1.04x size, 0.97x speed`` on one device."""
    kept = ", ".join(f"`{k}`" for k in fixed.keep)
    size = fixed.facts[FIXED].size_bytes / fixed.facts[FULL].size_bytes
    if cost.not_measured:
        return f"{cost.device}: keep {kept} float: {size:.2f}x size; not run: {cost.not_measured}"
    parts = []
    if FULL in cost.metrics and FIXED in cost.metrics:
        parts.append(gain(cost.metrics[FULL], cost.metrics[FIXED]))
    parts.append(f"{size:.2f}x size")
    parts.append(f"{cost.speed:.2f}x speed" if cost.speed is not None else "speed not measured")
    errors = f" ({'; '.join(f'{k}: {v}' for k, v in cost.errors.items())})" if cost.errors else ""
    return f"{cost.device}: keep {kept} float: {', '.join(parts)}{errors}"


def markdown(r: SensitivityResult) -> str:
    lines = [f"# Sensitivity: {r.model}", "",
             f"Task metric: {r.task}; bounds: {r.bounds}. Every layer quantized (QAT, ranges calibrated, "
             f"no fine-tune): {r.full.headline}.", "",
             f"Budget {r.budget_s:.0f} s; took {r.seconds:.0f} s. Measured: "
             f"{', '.join(s.unit.name for s in r.layers if s.measured) or 'none'}. "
             f"Cut by the budget: {', '.join(r.cut) or 'none'}.", "",
             "| rank | layer | class | only it quantized | all but it quantized | weights SQNR | output SQNR |",
             "|---:|---|---|---|---|---:|---:|"]
    for i, s in enumerate(r.layers, 1):
        q = s.quick
        lines.append(f"| {i} | `{s.unit.name}` | {s.unit.layer_class} | {_metric(s.only_this)} | "
                     f"{_metric(s.all_but_this)} | {_db(q.weight_sqnr_db) if q else '-'} | "
                     f"{_db(q.output_sqnr_db) if q else '-'} |")
    p = r.proposal
    lines += ["", "## Proposal", "", f"{p.why}.", ""]
    lines += [f"- keep {', '.join(f'`{k}`' for k in s.keep)} in float: {s.metric.headline}" for s in p.steps]
    if r.fixed is not None:
        f = r.fixed
        lines += ["", "## The fix, built and measured", "",
                  f"Both QAT models {f.training}; full int8 converted full-integer like the harness's QAT arm, "
                  f"the fixed one int8 except the kept layers' ops (float32 weights and compute, float32 input "
                  f"and output).", "",
                  f"- Keras (fake-quant): full int8 {f.keras[FULL].headline}; fixed {f.keras[FIXED].headline}",
                  f"- size: full int8 {f.facts[FULL].size_bytes} B, fixed {f.facts[FIXED].size_bytes} B; float ops in "
                  f"the fixed file: {len(f.facts[FIXED].float_ops)} of {f.facts[FIXED].ops} "
                  f"({', '.join(f.facts[FIXED].float_ops) or 'none'})", ""]
        for cost in f.devices:
            lines.append(f"- {cost_line(f, cost)}")
            for v, m in cost.metrics.items():
                lines.append(f"  - {v}: {m.headline}" + (f", median {cost.median_ms[v]:.3f} ms"
                                                          if v in cost.median_ms else ""))
    lines += [f"- note: {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def write(r: SensitivityResult, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "sensitivity.md", out / "sensitivity.json"
    md.write_text(markdown(r))
    body = dataclasses.asdict(r)
    body["cut"] = r.cut
    if r.fixed is not None:
        body["fixed"]["lines"] = [cost_line(r.fixed, c) for c in r.fixed.devices]
    js.write_text(json.dumps(body, indent=2, default=str))
    return md, js
