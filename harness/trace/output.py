"""What a trace writes: ``trace.json`` (everything), ``trace.md`` (a table, one row per op),
``trace.png`` (error against depth per stage) and node data for Google's Model Explorer
(``ai-edge-model-explorer``).

Model Explorer node data: one JSON file per measure, in the ``GraphNodeData`` shape of
``model_explorer.node_data_builder`` — ``{"results": {<key>: {"value": v}}, "thresholds":
[{"value": v, "bgColor": c}, ...]}`` — keyed by each op's output tensor name, which Model
Explorer matches against a node's output ``tensor_name``. To see it::

    pip install ai-edge-model-explorer
    model-explorer int8.tflite --node_data_paths=DIR/trace_nodedata_quantization.json

(or, in its web UI, open the model then "Add per-node data" and pick the file). Per device:
``trace_nodedata_<device>.json`` its cumulative error (the model cut after each op, from the
model inputs) and ``trace_nodedata_<device>_local.json`` its local error (each op alone, on the
reference kernels' inputs); steps for quantized tensors, relative error for a float model's.
"""
from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Mapping
from pathlib import Path

from qat_harness.measure.difference import OutputDifference
from qat_harness.record.folder import write_atomically
from qat_harness.trace.results import DeviceCut, OpTrace, TraceFiles, TraceResult, measured

#: pyplot keeps global state: the layer matrix traces cells from several threads at once
_PLOT_LOCK = threading.Lock()


def _clean(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_json(result: TraceResult, out_dir: Path) -> Path:
    path = Path(out_dir) / "trace.json"
    return write_atomically(path, json.dumps(_clean(result.to_dict()), indent=1))


def _fmt(v: float | None, spec: str = ".2f") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not math.isfinite(v):
        return "inf"
    return format(v, spec)


def _cut_cell(cut: DeviceCut | None) -> str:
    """Steps for a quantized tensor, relative error (and SQNR) for a float one."""
    if cut is None:
        return "–"
    if cut.error is not None:
        return "error"
    steps = cut.max_steps
    if steps is not None:
        return _fmt(steps, "g")
    worst = cut.worst
    sqnr = f" ({worst.sqnr_db:.0f} dB)" if isinstance(worst, OutputDifference) and worst.sqnr_db is not None else ""
    return _fmt(cut.max_rel, ".2g") + sqnr


def _device_cells(result: TraceResult, index: int, device: str) -> str:
    o = result.ops[index]
    return f"{_cut_cell(o.local.get(device))} | {_cut_cell(o.devices.get(device))} | "


def _verdict_cell(o: OpTrace) -> str:
    return f"not measured: {o.not_measured}" if o.not_measured else o.verdict.value


def write_markdown(result: TraceResult, out_dir: Path) -> Path:
    devices = list(result.devices)
    t = result.thresholds
    lines = ["# Per-layer trace", "",
             f"int8 model `{result.int8_path}`, float model `{result.float_path}`, {result.n_examples} example(s); "
             f"thresholds: relative error {t.threshold_rel:g} (jump ×"
             f"{t.jump_factor:g} over what the inputs carried); a device departs from the reference kernels "
             f"beyond {t.device_bound(result.float_model)}"
             + (" (a float model: float32 kernels differ by ~1e-7..1e-5, bf16/fp16 arithmetic by ~1e-3..1e-2)"
                if result.float_model else " (quantized tensors, in steps of each tensor's own scale)") + ".", "",
             "Device errors per op: **local** = the op alone, fed the reference kernels' values of its inputs "
             "(what it adds); **cumulative** = the model cut after the op, from the model inputs (what arrives). "
             "The device culprit is the first op whose local error is out of bounds, else the op the cumulative "
             f"departure is carried from. Local error measured at: {result.local_rule or '–'}.", ""]
    c = result.culprit
    if c:
        lines.append(f"**Culprit: op {c.op} {c.opcode} (layer `{c.layer}`), stage "
                     f"**{c.stage}**{' on ' + c.device if c.device else ''}: {c.reason}**")
        if c.local is not None or c.carried is not None:
            lines.append("")
            lines.append(f"- local error at op {c.op}: {c.local.headline if c.local else '– (not measured)'}; "
                         f"carried (cumulative) at op {c.visible_at}: "
                         f"{c.carried.headline if c.carried else '– (not measured)'}")
    else:
        lines.append("**No culprit: every stage stays within its threshold.**" if result.ops
                     else "**Nothing traced: no op of this model can be followed on the host (see skipped).**")
    lines.append("")
    for name, b in result.devices.items():
        extra = f" + {len(b.attribution_runs)} for local/cumulative errors" if b.attribution_runs else ""
        lines.append(f"- {name}: {b.status} — {b.reason} ({len(b.runs)} run(s){extra})")
    for line in result.skipped:
        lines.append(f"- skipped: {line}")
    for note in result.notes:
        lines.append(f"- note: {note}")
    keras = result.keras_stage
    keras_heads = ("QAT Keras vs float: rel | int8 ref vs QAT Keras: mean / max steps | " if keras else "")
    lines += ["", "| op | opcode | layer | scale | " + keras_heads + "int8 ref vs float: mean / max steps | rel | "
              "carried | " + "".join(f"{d} local | {d} cumulative | " for d in devices) + "verdict |",
              "|" + "---|" * (8 + 2 * len(devices) + (2 if keras else 0))]
    for o in result.ops:
        q = measured(o.quant)
        devs = [_device_cells(result, o.index, d) for d in devices]
        keras_cells = ""
        if keras:
            k, conv = measured(o.keras_qat), measured(o.conversion)
            keras_cells = (f"{_fmt(k.rel if k else None, '.3f')} | {_fmt(conv.mean_steps if conv else None)} / "
                           f"{_fmt(conv.max_steps if conv else None, '.1f')} | ")
        lines.append(f"| {o.index} | {o.opcode} | `{o.layer}` | {_fmt(o.scale, '.3g')} | {keras_cells}"
                     f"{_fmt(q.mean_steps if q else None)} / {_fmt(q.max_steps if q else None, '.1f')} | "
                     f"{_fmt(q.rel if q else None, '.3f')} | "
                     f"{_fmt(o.carried_rel, '.3f')} | " + "".join(devs) + f"{_verdict_cell(o)} |")
    lines.append("")
    return write_atomically(Path(out_dir) / "trace.md", "\n".join(lines))


def write_plot(result: TraceResult, out_dir: Path) -> Path | None:
    """``trace.png``; layer and device names are drawn as text (``writers.plots.text_only``)."""
    from qat_harness.writers.plots import text_only

    with _PLOT_LOCK, text_only():
        return _write_plot(result, out_dir)


def _write_plot(result: TraceResult, out_dir: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    quant = [(o.index, q) for o in result.ops if (q := measured(o.quant)) is not None]
    xs = [i for i, _ in quant]
    ax1.plot(xs, [max(q.rel, 1e-6) for _, q in quant],
             "o-", ms=3, label="int8 (reference kernels) vs float: relative error")
    ax1.plot(xs, [max(q.mean_steps or 0, 1e-6) for _, q in quant],
             "s--", ms=3, label="… mean error in steps of the tensor's scale")
    if result.keras_stage:
        keras = [(o.index, k.rel) for o in result.ops if (k := measured(o.keras_qat)) is not None]
        ax1.plot([i for i, _ in keras], [max(rel, 1e-6) for _, rel in keras], "^-", ms=3,
                 label="QAT Keras (fake quant) vs float: relative error")
        conversion = [(o.index, c.mean_steps) for o in result.ops
                      if (c := measured(o.conversion)) is not None and c.mean_steps is not None]
        ax1.plot([i for i, _ in conversion], [max(steps, 1e-6) for _, steps in conversion], "v:", ms=3,
                 label="int8 (reference kernels) vs QAT Keras: mean steps (conversion)")
    ax1.axhline(result.thresholds.threshold_rel, color="grey", lw=0.8, ls=":")
    if xs:
        ax1.set_yscale("log")
    else:
        ax1.text(0.5, 0.5, "no float model: quantization stage not traced", ha="center",
                 transform=ax1.transAxes, fontsize=8)
    ax1.set_ylabel("quantization stage")
    ax1.legend(fontsize=7)
    floor = 1e-9 if result.float_model else 0.1
    plotted = False
    for name in result.devices:
        for kind, style, per_op in (("cumulative", "o-", lambda o: o.devices), ("local", "x:", lambda o: o.local)):
            pts = [(o.index, v) for o in result.ops
                   if name in per_op(o) and (v := per_op(o)[name].magnitude) is not None and math.isfinite(v)]
            if pts:
                ax2.plot([i for i, _ in pts], [max(v, floor) for _, v in pts], style, ms=4,
                         label=f"{name} vs reference kernels ({kind})")
                plotted = True
    ax2.axhline(result.thresholds.threshold_float_rel if result.float_model else result.thresholds.threshold_steps,
                color="grey", lw=0.8, ls=":")
    ax2.set_yscale("log")
    ax2.set_ylabel("device stage: max relative error" if result.float_model else "device stage: max steps")
    ax2.set_xlabel("op index (depth)")
    if plotted:
        ax2.legend(fontsize=7)
    culprit = result.culprit
    if culprit:
        for ax in (ax1, ax2):
            ax.axvline(culprit.op, color="red", lw=1)
        ax1.set_title(f"culprit: op {culprit.op} {culprit.opcode} ({culprit.layer}), stage {culprit.stage}",
                      fontsize=9)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return write_atomically(Path(out_dir) / "trace.png", png.getvalue())


GREEN, YELLOW, RED = "#c8e6c9", "#fff59d", "#ef9a9a"


def _finite(values: Mapping[str, object]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _write_node_data(out_dir: Path, measure: str, values: dict[str, float],
                     thresholds: list[tuple[float, str]]) -> Path | None:
    """One Model Explorer ``GraphNodeData`` file (``trace_nodedata_<measure>.json``)."""
    if not values:
        return None
    data = {"results": {k: {"value": v} for k, v in values.items()},
            "thresholds": [{"value": v, "bgColor": c} for v, c in thresholds]}
    path = Path(out_dir) / f"trace_nodedata_{''.join(ch if ch.isalnum() else '_' for ch in measure)}.json"
    return write_atomically(path, json.dumps(data, indent=1))


def write_model_explorer(result: TraceResult, out_dir: Path) -> dict[str, Path]:
    """measure -> its node-data file (the measures with a finite value on some op)."""
    rel_t, steps_t = result.thresholds.threshold_rel, result.thresholds.threshold_steps
    quantization = {o.tensor_name: q.rel for o in result.ops if (q := measured(o.quant))}
    conversion = {o.tensor_name: c.mean_steps for o in result.ops if (c := measured(o.conversion))}
    measures: list[tuple[str, dict[str, float | None], list[tuple[float, str]]]] = [
        ("quantization", dict(quantization), [(rel_t / 2, GREEN), (rel_t, YELLOW), (1e30, RED)]),
        ("conversion", dict(conversion), [(steps_t / 2, GREEN), (steps_t, YELLOW), (1e30, RED)])]
    device_t = result.thresholds.threshold_float_rel if result.float_model else steps_t
    for name in result.devices:
        # cumulative (what arrives, under the device's own name) and local (the op alone)
        measures.append((name, {o.tensor_name: o.devices[name].magnitude for o in result.ops if name in o.devices},
                         [(device_t, GREEN), (1e30, RED)]))
        measures.append((f"{name}_local", {o.tensor_name: o.local[name].magnitude for o in result.ops
                                           if name in o.local}, [(device_t, GREEN), (1e30, RED)]))
    files: dict[str, Path] = {}
    for measure, values, thresholds in measures:
        path = _write_node_data(out_dir, measure, _finite(values), thresholds)
        if path is not None:
            files[measure] = path
    return files


def write_all(result: TraceResult, out_dir: Path) -> TraceFiles:
    """Every file but trace.json, which is written last, with these in it."""
    return TraceFiles(trace_json=Path(out_dir) / "trace.json", markdown=write_markdown(result, out_dir),
                      plot=write_plot(result, out_dir), model_explorer=write_model_explorer(result, out_dir))
