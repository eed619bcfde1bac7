"""``report.html``: the run report for people, one self-contained file (plots embedded as
``data:`` PNGs, styles inline, a Content-Security-Policy that forbids any network request).

The page is built from typed views of the report tree (``build_page``), rendered by
``templates/report.html.j2`` with autoescaping, so names from the user (models, dataset
folders, reasons) are always text."""
from __future__ import annotations

import dataclasses
from collections import Counter

from pydantic import JsonValue

from qat_harness.claims import CpuLatency
from qat_harness.devices.base import Delegation, Role
from qat_harness.measure.difference import OutputDifference
from qat_harness.record.tree import DeviceSection, ModelSection, RunReport
from qat_harness.results import Verdict
from qat_harness.stats import wilson_interval
from qat_harness.writers import plots
from qat_harness.writers.labels import speedup_label, under_test_label
from qat_harness.writers.templating import render as render_template
from qat_harness.writers.text import difference_line, format_measured


@dataclasses.dataclass(frozen=True)
class ClaimView:
    id: str
    model: str
    device: str
    verdict: str
    measured: str
    expected: str
    reason: str
    simulated: bool


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the instances of one op type of one variant ran."""
    count: int
    on_backend: int
    on_cpu: int
    reasons: str

    @property
    def text(self) -> str:
        if self.on_cpu == 0:
            return f"{self.on_backend}/{self.count}"
        return f"{self.on_backend}/{self.count}, {self.on_cpu} on the CPU"


@dataclasses.dataclass(frozen=True)
class VariantDelegation:
    variant: str
    backend: str
    ops_delegated: int | None
    ops_total: int | None
    partitions: int | None


@dataclasses.dataclass(frozen=True)
class DelegationView:
    """Which ops ran where: one row per op type, one column per variant."""
    variants: list[VariantDelegation]
    rows: list[tuple[str, list[Placement | None]]]     # op -> placement per variant


@dataclasses.dataclass(frozen=True)
class LatencyRowView:
    variant: str
    median_ms: float | None
    p90_ms: float | None
    min_ms: float | None
    n: int | None
    first_invoke_ms: float | None


@dataclasses.dataclass(frozen=True)
class DeviceView:
    model: str
    device: str
    simulated: bool
    role: str | None
    facts: list[tuple[str, str]]
    plot_uri: str
    latency: list[LatencyRowView]
    speedups: list[plots.SpeedupBar]
    speedup_band: tuple[float, float] | None
    accuracy: list[plots.AccuracyBar]
    delegation: DelegationView | None
    vs_reference: list[str]
    vs_float: list[str]                     # every non-class output against float (A3)
    trace: str | None                       # the per-layer trace's culprit, when the run traced
    errors: list[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class ModelView:
    name: str
    description: str | None
    dataset: str | None
    error: str | None
    sizes: list[tuple[str, float]]          # variant -> KiB
    devices: list[DeviceView]
    under_test: str = "int8"                # the file the claims judge, as people read it


@dataclasses.dataclass(frozen=True)
class PageView:
    run: RunReport
    counts: dict[str, int]
    claims: list[ClaimView]
    claim_texts: dict[str, str]
    simulated_devices: list[str]
    emulated_devices: list[str]
    models: list[ModelView]
    libraries: list[tuple[str, str]]


def render(run: RunReport) -> str:
    """The page of the report."""
    return render_template("report.html.j2", page=build_page(run))


def build_page(run: RunReport) -> PageView:
    from qat_harness.claims import TEXTS

    claims = [ClaimView(c.id, c.model, c.device, c.verdict.value, format_measured(c.measured),
                        format_measured(c.expected), c.reason, c.simulated) for c in run.claims]
    claims += [ClaimView("-", e.model, "any", Verdict.ERROR.value, "-", "-", f"refused: {e.error}", False)
               for e in run.refused]
    return PageView(run=run, counts={v.value: n for v, n in run.verdict_counts().items()}, claims=claims,
                    claim_texts={c.id: TEXTS.get(c.id, "") for c in run.claims},
                    simulated_devices=run.simulated_devices(), emulated_devices=run.emulated_devices(),
                    models=[_model_view(name, m, run) for name, m in run.models.items()],
                    libraries=sorted(run.environment.libraries.items()))


def _model_view(name: str, m: ModelSection, run: RunReport) -> ModelView:
    dataset_text = None
    if m.dataset:
        dataset_text = f"{m.dataset.name} ({m.dataset.eval_examples} examples" + \
                       ("" if m.dataset.labels_meaningful else ", no labels") + ")"
    sizes = [(v, t.size_bytes / 1024) for v, t in (m.tflite or {}).items() if t.size_bytes]
    devices = [_device_view(name, dev, d, m, run) for dev, d in m.devices.items()]
    return ModelView(name=name, description=m.description, dataset=dataset_text,
                     error=m.error, sizes=sizes, devices=devices, under_test=under_test_label(m))


def _device_view(model: str, device: str, d: DeviceSection, m: ModelSection, run: RunReport) -> DeviceView:
    description = run.devices.get(device)
    role = description.role.value if description and description.role else None
    band = CpuLatency.SPEEDUP_RANGE if description and description.role is Role.HOST_CPU else None
    speedups = [plots.SpeedupBar(speedup_label(m, kind), s.ratio, s.ci_low, s.ci_high)
                for kind, s in (("qat_vs_float", d.speedup_qat_vs_float), ("ptq_vs_float", d.speedup_ptq_vs_float))
                if s is not None]
    accuracy = _accuracy_bars(d.top1 or {}, m.dataset.eval_examples if m.dataset else None)
    raw = {v: samples for v, samples in (d.latency_raw_ms or {}).items() if samples}
    figure = plots.device_figure(plots.DeviceFigureData(raw, speedups, band, accuracy))
    first = d.first_invoke_ms or {}
    latency = [LatencyRowView(v, s.median_ms, s.p90_ms, s.min_ms, s.n, first.get(v))
               for v in plots.ordered_variants(d.latency or {}) if (s := (d.latency or {})[v])]
    facts = [(k, _fact(v)) for k, v in description.facts.items()] if description else []
    return DeviceView(model=model, device=device, simulated=d.simulated, role=role,
                      facts=facts, plot_uri=figure, latency=latency, speedups=speedups, speedup_band=band,
                      accuracy=accuracy, delegation=_delegation_views(d.delegation, m),
                      vs_reference=[_difference(diff) for diff in d.reference_differences()],
                      vs_float=[_difference(diff, " against float") for diff in d.vs_float or []],
                      trace=_trace_line(d), errors=sorted(d.errors.items()))


def _trace_line(d: DeviceSection) -> str | None:
    if d.trace is None:
        return None
    return f"Per-layer trace: {d.trace.finding()}"


def _accuracy_bars(top1: dict[str, float], n: int | None) -> list[plots.AccuracyBar]:
    bars = []
    for variant in plots.ordered_variants(top1):
        rate = top1[variant]
        interval = wilson_interval(round(rate * n), n) if n else None
        bars.append(plots.AccuracyBar(plots.variant_label(variant), rate,
                                      interval.ci_low if interval else None, interval.ci_high if interval else None))
    return bars


def _delegation_views(delegation: dict[str, Delegation], m: ModelSection) -> DelegationView | None:
    variants, placements = [], {}
    for variant in plots.ordered_variants(delegation):
        dl = delegation[variant]
        partitions = dl.details.get("partitions")
        variants.append(VariantDelegation(variant, dl.backend, dl.ops_delegated, dl.ops_total,
                                          partitions if isinstance(partitions, int) else None))
        summary = (m.tflite or {}).get(variant)
        placements[variant] = _placements(dl, summary.op_counts if summary else {})
    if not variants:
        return None
    ops = sorted({op for p in placements.values() for op in p})
    return DelegationView(variants, [(op, [placements[v.variant].get(op) for v in variants]) for op in ops])


def _placements(dl: Delegation, op_counts: dict[str, int]) -> dict[str, Placement]:
    on_cpu = Counter(str(op) for op, _why in dl.fallback)
    reasons: dict[str, set[str]] = {}
    for op, why in dl.fallback:
        reasons.setdefault(str(op), set()).add(str(why))
    placements = {}
    for op in set(op_counts) | set(on_cpu):
        total = int(op_counts.get(op, on_cpu[op]))
        cpu = min(on_cpu[op], total)
        placements[op] = Placement(total, total - cpu, cpu, "; ".join(sorted(reasons.get(op, ()))))
    return placements


def _difference(diff: OutputDifference, against: str = "") -> str:
    return f"output {diff.output}{against}: {difference_line(diff)}" if diff.output else difference_line(diff)


def _fact(value: JsonValue) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(_fact, value))
    return str(value)
