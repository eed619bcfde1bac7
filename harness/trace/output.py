"""What a trace writes: ``trace.json`` (everything), ``trace.md`` (a table, one row per op),
``trace.png`` (error against depth per stage) and node data for Google's Model Explorer
(``ai-edge-model-explorer``).

Model Explorer node data: one JSON file per measure, in the ``GraphNodeData`` shape of
``model_explorer.node_data_builder`` — ``{"results": {<key>: {"value": v}}, "thresholds":
[{"value": v, "bgColor": c}, ...]}`` — keyed by each op's output tensor name, which Model
Explorer matches against a node's output ``tensor_name``. To see it::

    pip install ai-edge-model-explorer
    model-explorer int8.tflite --node_data_paths=DIR/trace_nodedata_quantization.json

(or, in its web UI, open the model then "Add per-node data" and pick the file).
"""
from __future__ import annotations

import io
import json
import math
import threading
from pathlib import Path

from qat_harness.record.folder import write_atomically

#: pyplot keeps global state: the layer matrix traces cells from several threads at once
_PLOT_LOCK = threading.Lock()


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_json(result, out_dir: Path) -> Path:
    path = Path(out_dir) / "trace.json"
    return write_atomically(path, json.dumps(_clean(result.to_dict()), indent=1))


def _fmt(v, spec=".2f"):
    if v is None:
        return "–"
    if isinstance(v, float) and not math.isfinite(v):
        return "inf"
    return format(v, spec)


def write_markdown(result, out_dir: Path) -> Path:
    devices = list(result.devices)
    lines = ["# Per-layer trace", "",
             f"int8 model `{result.int8_path}`, float model `{result.float_path}`, {result.n_examples} example(s); "
             f"thresholds: relative error {result.thresholds['threshold_rel']:g} (jump ×"
             f"{result.thresholds['jump_factor']:g} over what the inputs carried), device "
             f"{result.thresholds['threshold_steps']:g} int8 step(s) from the reference kernels.", ""]
    c = result.culprit
    if c:
        lines.append(f"**Culprit: op {c['op']} {c['opcode']} (layer `{c['layer']}`), stage "
                     f"**{c['stage']}**{' on ' + c['device'] if c.get('device') else ''}: {c['reason']}**")
    else:
        lines.append("**No culprit: every stage stays within its threshold.**")
    lines.append("")
    for name, b in result.devices.items():
        lines.append(f"- {name}: {b.get('status')} — {b.get('reason', '')} ({len(b.get('runs', []))} run(s))")
    for note in result.notes:
        lines.append(f"- note: {note}")
    keras = result.keras_stage
    keras_heads = ("QAT Keras vs float: rel | int8 ref vs QAT Keras: mean / max steps | " if keras else "")
    lines += ["", "| op | opcode | layer | scale | " + keras_heads + "int8 ref vs float: mean / max steps | rel | "
              "carried | " + "".join(f"{d} vs ref: max steps | " for d in devices) + "verdict |",
              "|" + "---|" * (7 + len(devices) + (2 if keras else 0))]
    for o in result.ops:
        q = o.quant or {}
        devs = []
        for d in devices:
            r = o.devices.get(d)
            devs.append("–" if not r else ("error" if "error" in r and "max_steps" not in r
                                           else _fmt(r.get("max_steps", r.get("max_rel")), "g")))
        keras_cells = ""
        if keras:
            k, c = o.keras_qat or {}, o.conversion or {}
            keras_cells = (f"{_fmt(k.get('rel'), '.3f')} | {_fmt(c.get('mean_steps'))} / "
                           f"{_fmt(c.get('max_steps'), '.1f')} | ")
        lines.append(f"| {o.index} | {o.opcode} | `{o.layer}` | {_fmt(o.scale, '.3g')} | {keras_cells}"
                     f"{_fmt(q.get('mean_steps'))} / {_fmt(q.get('max_steps'), '.1f')} | {_fmt(q.get('rel'), '.3f')} | "
                     f"{_fmt(o.carried_rel, '.3f')} | " + "".join(f"{d} | " for d in devs) + f"{o.verdict} |")
    lines.append("")
    return write_atomically(Path(out_dir) / "trace.md", "\n".join(lines))


def write_plot(result, out_dir: Path) -> Path | None:
    """``trace.png``; layer and device names are drawn as text (``writers.plots.text_only``)."""
    from qat_harness.writers.plots import text_only

    with _PLOT_LOCK, text_only():
        return _write_plot(result, out_dir)


def _write_plot(result, out_dir: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    xs = [o.index for o in result.ops if o.quant and "rel" in o.quant]
    ax1.plot(xs, [max(o.quant["rel"], 1e-6) for o in result.ops if o.quant and "rel" in o.quant],
             "o-", ms=3, label="int8 (reference kernels) vs float: relative error")
    ax1.plot(xs, [max(o.quant.get("mean_steps", 0), 1e-6) for o in result.ops if o.quant and "rel" in o.quant],
             "s--", ms=3, label="… mean error in steps of the tensor's scale")
    if result.keras_stage:
        kx = [o.index for o in result.ops if o.keras_qat and "rel" in o.keras_qat]
        ax1.plot(kx, [max(result.ops[i].keras_qat["rel"], 1e-6) for i in kx], "^-", ms=3,
                 label="QAT Keras (fake quant) vs float: relative error")
        cx = [o.index for o in result.ops if o.conversion and o.conversion.get("mean_steps") is not None]
        ax1.plot(cx, [max(result.ops[i].conversion["mean_steps"], 1e-6) for i in cx], "v:", ms=3,
                 label="int8 (reference kernels) vs QAT Keras: mean steps (conversion)")
    ax1.axhline(result.thresholds["threshold_rel"], color="grey", lw=0.8, ls=":")
    if xs:
        ax1.set_yscale("log")
    else:
        ax1.text(0.5, 0.5, "no float model: quantization stage not traced", ha="center",
                 transform=ax1.transAxes, fontsize=8)
    ax1.set_ylabel("quantization stage")
    ax1.legend(fontsize=7)
    for name in result.devices:
        pts = sorted((o.index, o.devices[name].get("max_steps")) for o in result.ops
                     if name in result.ops[o.index].devices and o.devices[name].get("max_steps") is not None)
        if pts:
            ax2.plot([p[0] for p in pts], [max(float(p[1]), 0.1) if p[1] != "inf" else 1e3 for p in pts],
                     "o-", ms=4, label=f"{name} vs reference kernels (cuts)")
    ax2.axhline(result.thresholds["threshold_steps"], color="grey", lw=0.8, ls=":")
    ax2.set_yscale("log")
    ax2.set_ylabel("device stage: max int8 steps")
    ax2.set_xlabel("op index (depth)")
    if result.devices:
        ax2.legend(fontsize=7)
    if result.culprit:
        for ax in (ax1, ax2):
            ax.axvline(result.culprit["op"], color="red", lw=1)
        ax1.set_title(f"culprit: op {result.culprit['op']} {result.culprit['opcode']} "
                      f"({result.culprit['layer']}), stage {result.culprit['stage']}", fontsize=9)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return write_atomically(Path(out_dir) / "trace.png", png.getvalue())


GREEN, YELLOW, RED = "#c8e6c9", "#fff59d", "#ef9a9a"


def _finite(values: dict[str, object]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _write_node_data(out_dir: Path, measure: str, values: dict[str, float], thresholds: list[tuple[float, str]],
                     files: dict) -> None:
    """One Model Explorer ``GraphNodeData`` file (``trace_nodedata_<measure>.json``)."""
    if not values:
        return
    data = {"results": {k: {"value": v} for k, v in values.items()},
            "thresholds": [{"value": v, "bgColor": c} for v, c in thresholds]}
    path = Path(out_dir) / f"trace_nodedata_{''.join(ch if ch.isalnum() else '_' for ch in measure)}.json"
    write_atomically(path, json.dumps(data, indent=1))
    files[f"model_explorer_{measure}"] = str(path)


def write_model_explorer(result, out_dir: Path) -> dict[str, Path]:
    files: dict = {}
    rel_t, steps_t = result.thresholds["threshold_rel"], result.thresholds["threshold_steps"]
    _write_node_data(out_dir, "quantization", _finite({o.tensor_name: (o.quant or {}).get("rel") for o in result.ops}),
                     [(rel_t / 2, GREEN), (rel_t, YELLOW), (1e30, RED)], files)
    _write_node_data(out_dir, "conversion",
                     _finite({o.tensor_name: (o.conversion or {}).get("mean_steps") for o in result.ops}),
                     [(steps_t / 2, GREEN), (steps_t, YELLOW), (1e30, RED)], files)
    for name in result.devices:
        _write_node_data(out_dir, name, _finite({o.tensor_name: o.devices.get(name, {}).get("max_steps")
                                                 for o in result.ops}), [(steps_t, GREEN), (1e30, RED)], files)
    return files


def write_all(result, out_dir: Path) -> dict:
    files: dict[str, str | Path] = {"json": str(Path(out_dir) / "trace.json"),
                                    "markdown": str(write_markdown(result, out_dir))}
    plot = write_plot(result, out_dir)
    if plot:
        files["plot"] = str(plot)
    files.update(write_model_explorer(result, out_dir))
    return files
