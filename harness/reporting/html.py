"""``report.html``: the run report for people, one self-contained file (plots embedded as
``data:`` PNGs, styles inline, a Content-Security-Policy that forbids any network request).

``write_html(data, path)`` takes the report as it is written to report.json. The page is built
from typed views of that data (``build_page``), rendered by ``templates/report.html.j2`` with
autoescaping, so names from the user (models, dataset folders, reasons) are always text."""
from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from qat_harness.claims import CLAIMS, CPU_SPEEDUP_RANGE
from qat_harness.devices.base import Role
from qat_harness.reporting import plots
from qat_harness.reporting.intervals import wilson
from qat_harness.reporting.templating import render
from qat_harness.results import Verdict

HOST_CPU_ROLE = Role.HOST_CPU.value   # only these devices' speed-up is judged against the documented band


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
    errors: list[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class ModelView:
    name: str
    description: str | None
    dataset: str | None
    error: str | None
    sizes: list[tuple[str, float]]          # variant -> KiB
    devices: list[DeviceView]


@dataclasses.dataclass(frozen=True)
class PageView:
    data: dict
    counts: dict[str, int]
    claims: list[ClaimView]
    claim_texts: dict[str, str]
    simulated_devices: list[str]
    models: list[ModelView]
    libraries: list[tuple[str, str]]


def write_html(data: dict, path: Path) -> Path:
    """Render the report (report.json's data) to ``path``; returns the path."""
    path = Path(path)
    path.write_text(render("report.html.j2", page=build_page(data)), encoding="utf-8")
    return path


def build_page(data: dict) -> PageView:
    from qat_harness.report import format_measured

    claims = [ClaimView(str(c.get("id")), str(c.get("model")), str(c.get("device")), str(c.get("verdict")),
                        format_measured(c.get("measured")), format_measured(c.get("expected")),
                        str(c.get("reason", "")), bool(c.get("simulated")))
              for c in data.get("claims", [])]
    counts = {v.value: sum(1 for c in claims if c.verdict == v.value) for v in Verdict}
    simulated = sorted({c.device for c in claims if c.simulated} |
                       {name for name, d in (data.get("devices") or {}).items()
                        if isinstance(d, dict) and d.get("simulated")})
    libraries = sorted(((data.get("environment") or {}).get("libraries") or {}).items())
    return PageView(data=data, counts=counts, claims=claims,
                    claim_texts={c.id: CLAIMS.get(c.id, "") for c in claims},
                    simulated_devices=simulated,
                    models=[_model_view(name, m, data) for name, m in (data.get("models") or {}).items()],
                    libraries=[(str(k), str(v)) for k, v in libraries])


def _model_view(name: str, m: dict, data: dict) -> ModelView:
    dataset = m.get("dataset") or {}
    dataset_text = None
    if dataset:
        dataset_text = f"{dataset.get('name')} ({dataset.get('eval_examples')} examples" + \
                       ("" if dataset.get("labels_meaningful", True) else ", no labels") + ")"
    sizes = [(v, t["size_bytes"] / 1024) for v, t in (m.get("tflite") or {}).items()
             if isinstance(t, dict) and t.get("size_bytes")]
    devices = [_device_view(name, dev, d, m, data) for dev, d in (m.get("devices") or {}).items()]
    return ModelView(name=name, description=m.get("description"), dataset=dataset_text,
                     error=m.get("error"), sizes=sizes, devices=devices)


def _device_view(model: str, device: str, d: dict, m: dict, data: dict) -> DeviceView:
    description = (data.get("devices") or {}).get(device) or {}
    role = description.get("role") if isinstance(description, dict) else None
    band = CPU_SPEEDUP_RANGE if role == HOST_CPU_ROLE else None
    speedups = [plots.SpeedupBar(plots.SPEEDUP_LABELS[kind], s["ratio"], s.get("ci_low"), s.get("ci_high"))
                for key, kind in (("speedup_qat_vs_float", "qat_vs_float"), ("speedup_ptq_vs_float", "ptq_vs_float"))
                if (s := d.get(key)) and s.get("ratio") is not None]
    accuracy = _accuracy_bars(d.get("top1") or {}, (m.get("dataset") or {}).get("eval_examples"))
    raw = {v: samples for v, samples in (d.get("latency_raw_ms") or {}).items() if samples}
    figure = plots.device_figure(plots.DeviceFigureData(raw, speedups, band, accuracy))
    first = d.get("first_invoke_ms") or {}
    latency = [LatencyRowView(v, s.get("median_ms"), s.get("p90_ms"), s.get("min_ms"), s.get("n"), first.get(v))
               for v in plots.ordered_variants(d.get("latency") or {}) if (s := d["latency"][v])]
    facts = [(str(k), _fact(v)) for k, v in description.items()] if isinstance(description, dict) else []
    return DeviceView(model=model, device=device, simulated=bool(d.get("simulated")), role=role,
                      facts=facts, plot_uri=figure, latency=latency, speedups=speedups, speedup_band=band,
                      accuracy=accuracy, delegation=_delegation_views(d.get("delegation") or {}, m),
                      vs_reference=_reference_lines(d), errors=sorted((d.get("errors") or {}).items()))


def _accuracy_bars(top1: dict, n: int | None) -> list[plots.AccuracyBar]:
    bars = []
    for variant in plots.ordered_variants(top1):
        rate = top1[variant]
        if rate is None:
            continue
        interval = wilson(round(rate * n), n) if n else None
        bars.append(plots.AccuracyBar(plots.variant_label(variant), rate,
                                      interval.low if interval else None, interval.high if interval else None))
    return bars


def _delegation_views(delegation: dict, m: dict) -> DelegationView | None:
    variants, placements = [], {}
    for variant in plots.ordered_variants(delegation):
        dl = delegation[variant] or {}
        variants.append(VariantDelegation(variant, str(dl.get("backend", "?")), dl.get("ops_delegated"),
                                          dl.get("ops_total"), (dl.get("details") or {}).get("partitions")))
        placements[variant] = _placements(dl, ((m.get("tflite") or {}).get(variant) or {}).get("op_counts") or {})
    if not variants:
        return None
    ops = sorted({op for p in placements.values() for op in p})
    return DelegationView(variants, [(op, [placements[v.variant].get(op) for v in variants]) for op in ops])


def _placements(dl: dict, op_counts: dict) -> dict[str, Placement]:
    fallback = [f for f in dl.get("fallback") or [] if f]
    on_cpu = Counter(str(f[0]) for f in fallback)
    reasons: dict[str, set[str]] = {}
    for f in fallback:
        if len(f) > 1:
            reasons.setdefault(str(f[0]), set()).add(str(f[1]))
    placements = {}
    for op in set(op_counts) | set(on_cpu):
        total = int(op_counts.get(op, on_cpu[op]))
        cpu = min(on_cpu[op], total)
        placements[op] = Placement(total, total - cpu, cpu, "; ".join(sorted(reasons.get(op, ()))))
    return placements


def _reference_lines(d: dict) -> list[str]:
    diffs = d.get("vs_reference_kernels_outputs") or ([d["vs_reference_kernels"]] if d.get("vs_reference_kernels") else [])
    lines = []
    for diff in diffs:
        if "max_steps" in diff:
            what = f"max {diff['max_steps']} {diff.get('domain', 'int8 steps')}"
        elif "max_abs" in diff:
            what = f"max abs difference {diff['max_abs']:.3g} (float)"
        else:
            what = "class ids"
        output = f"output {diff['output']}: " if diff.get("output") else ""
        lines.append(f"{output}{what}, {100 * diff.get('fraction_exact', 0):.1f}% of values identical")
    return lines


def _fact(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fact(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_fact, value))
    return str(value)
