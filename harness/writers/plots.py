"""The pictures of the HTML pages, drawn with matplotlib (Agg, no display) and embedded as
``data:`` PNG URIs so each page is one self-contained file.

Every figure is drawn inside ``text_only()``: matplotlib then draws each string as the text it
is, never as mathtext (a ``$`` in a layer, device or library name would otherwise be parsed, and
a malformed one fails the page)."""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import os
from collections.abc import Iterator

from qat_harness.variants import Variant
from qat_harness.writers.trends import Point

#: drawn in this order, the other variants after them by name
DRAWN_FIRST = (Variant.FLOAT, Variant.PTQ_INT8, Variant.QAT_INT8)
VARIANT_COLOURS = {"float": "#7f7f7f", "ptq_int8": "#1f77b4", "qat_int8": "#d62728",
                   "ptq_vs_float": "#1f77b4", "qat_vs_float": "#d62728"}
SPEEDUP_LABELS = {"qat_vs_float": "float / QAT int8", "ptq_vs_float": "float / PTQ int8"}
BAND_COLOUR = "#2ca02c"


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported only when a page is drawn."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def text_only() -> Iterator[None]:
    """Figures made and saved inside draw every string as text (no mathtext, no TeX)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def ordered_variants(variants) -> list[str]:
    first = [v.value for v in DRAWN_FIRST if v.value in variants]
    return first + sorted(v for v in variants if v not in first)


def variant_label(variant: str) -> str:
    """As reports name it (``Variant.label``); a name that is no variant, as it is."""
    try:
        return Variant(variant).label
    except ValueError:
        return variant


def _to_data_uri(fig) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


@dataclasses.dataclass(frozen=True)
class SpeedupBar:
    label: str
    ratio: float
    low: float | None
    high: float | None


@dataclasses.dataclass(frozen=True)
class AccuracyBar:
    label: str
    rate: float
    low: float | None
    high: float | None


@dataclasses.dataclass(frozen=True)
class DeviceFigureData:
    latency_raw_ms: dict[str, list[float]]           # variant -> samples
    speedups: list[SpeedupBar]
    speedup_band: tuple[float, float] | None          # the documented range, where a claim judges it
    accuracy: list[AccuracyBar]


def device_figure(data: DeviceFigureData) -> str:
    """Latency distributions, speed-up against the band, accuracy: one figure, three panels."""
    plt = _pyplot()
    with text_only():
        fig, (lat, speed, acc) = plt.subplots(1, 3, figsize=(13, 3.4),
                                              gridspec_kw={"width_ratios": [1.3, 1.2, 1]})
        _latency_panel(lat, data.latency_raw_ms)
        _speedup_panel(speed, data.speedups, data.speedup_band)
        _accuracy_panel(acc, data.accuracy)
        fig.tight_layout()
        return _to_data_uri(fig)


def _latency_panel(ax, raw: dict[str, list[float]]) -> None:
    variants = [v for v in ordered_variants(raw) if raw.get(v)]
    if not variants:
        _empty(ax, "no latency measured")
        return
    parts = ax.violinplot([raw[v] for v in variants], showmedians=False, showextrema=False)
    for body, v in zip(parts["bodies"], variants):
        body.set_facecolor(VARIANT_COLOURS.get(v, "#9467bd"))
        body.set_alpha(0.35)
    ax.boxplot([raw[v] for v in variants], widths=0.18, showfliers=False,
               medianprops={"color": "black"})
    ax.set_xticks(range(1, len(variants) + 1), [variant_label(v) for v in variants])
    ax.set_ylabel("latency per invoke (ms)")
    ax.set_title("latency distribution", fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _speedup_panel(ax, bars: list[SpeedupBar], band: tuple[float, float] | None) -> None:
    if not bars:
        _empty(ax, "no speed-up measured")
        return
    ys = list(range(len(bars)))
    top = max([b.high or b.ratio for b in bars] + [band[1] * 1.1 if band else 1.5])
    if band:
        ax.axvspan(band[0], band[1], color=BAND_COLOUR, alpha=0.15,
                   label=f"documented {band[0]:g}-{band[1]:g}x")
    ax.axvline(1.0, color="#555555", linestyle=":", linewidth=1, label="1x (no gain)")
    for y, bar in zip(ys, bars):
        err = None
        if bar.low is not None and bar.high is not None:
            err = [[bar.ratio - bar.low], [bar.high - bar.ratio]]
        ax.errorbar([bar.ratio], [y], xerr=err, fmt="o", color="black", capsize=5)
        ax.annotate(f"{bar.ratio:.2f}x", (bar.ratio, y), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize=8)
    ax.set_yticks(ys, [b.label for b in bars])
    ax.set_ylim(-0.7, len(bars) - 0.3)
    ax.set_xlim(0, top * 1.05)
    ax.set_xlabel("speed-up (float median / int8 median), 95% CI")
    ax.set_title("speed-up against the documented band", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


def _accuracy_panel(ax, bars: list[AccuracyBar]) -> None:
    if not bars:
        _empty(ax, "no accuracy measured")
        return
    xs = list(range(len(bars)))
    for x, bar in zip(xs, bars):
        err = None
        if bar.low is not None and bar.high is not None:
            err = [[100 * (bar.rate - bar.low)], [100 * (bar.high - bar.rate)]]
        ax.errorbar([x], [100 * bar.rate], yerr=err, fmt="s", capsize=5, color="black")
    ax.set_xticks(xs, [b.label for b in bars], fontsize=8)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylabel("top-1 (%), Wilson 95% CI")
    ax.set_title("accuracy", fontsize=10)
    ax.grid(axis="y", alpha=0.3)


@dataclasses.dataclass(frozen=True)
class TrendFigureData:
    night_labels: list[str]
    latency_ms: dict[str, list[Point]]           # variant ->
    speedup: dict[str, list[Point]]              # 'qat_vs_float' ->
    speedup_band: tuple[float, float] | None
    top1: dict[str, list[Point]]                 # variant ->
    changes: dict[int, str]                           # night index -> short text of what changed


def trend_figure(data: TrendFigureData) -> str:
    """Latency medians, speed-ups and accuracy across nights, with a marked line where the
    machine or a library changed."""
    with text_only():
        return _trend_figure(data)


def _trend_figure(data: TrendFigureData) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(12, 7.5), sharex=True)
    lat, speed, acc = axes
    _trend_lines(lat, data.latency_ms, variant_label, scale=1.0)
    lat.set_ylabel("median latency (ms)")
    if data.speedup_band:
        speed.axhspan(*data.speedup_band, color=BAND_COLOUR, alpha=0.15,
                      label=f"documented {data.speedup_band[0]:g}-{data.speedup_band[1]:g}x")
    speed.axhline(1.0, color="#555555", linestyle=":", linewidth=1)
    _trend_lines(speed, data.speedup, lambda k: SPEEDUP_LABELS.get(k, k), scale=1.0)
    speed.set_ylabel("speed-up (x)")
    _trend_lines(acc, data.top1, variant_label, scale=100.0)
    acc.set_ylabel("top-1 (%)")
    for ax, what in zip(axes, ("latency", "speed-up", "accuracy")):
        if not ax.lines and not ax.collections:
            _empty(ax, f"no {what} recorded")
        else:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
        for night in data.changes:
            ax.axvline(night - 0.5, color="#ff7f0e", linestyle="--", linewidth=1.2)
    for night, text in data.changes.items():
        lat.annotate(text, (night - 0.5, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                     textcoords="offset points", va="top", fontsize=7, color="#c15a00", rotation=0)
    labels = data.night_labels
    acc.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    acc.set_xlim(-0.5, len(labels) - 0.5)
    fig.tight_layout()
    return _to_data_uri(fig)


def _trend_lines(ax, series: dict[str, list[Point]], label, scale: float) -> None:
    keys = [k for k in ordered_variants(series) if series[k]]
    for position, key in enumerate(keys):
        points = series[key]
        offset = 0.06 * (position - (len(keys) - 1) / 2)   # overlapping error bars side by side
        xs = [p.night + offset for p in points]
        ys = [scale * p.value for p in points]
        lows = [scale * (p.value - p.low) if p.low is not None else 0.0 for p in points]
        highs = [scale * (p.high - p.value) if p.high is not None else 0.0 for p in points]
        ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=label(key),
                    color=VARIANT_COLOURS.get(key))
