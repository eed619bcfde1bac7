"""Issue 19 item 13: every string that reaches a plot (a layer, a device, a variant, a library
version) is drawn as the text it is, never parsed as matplotlib mathtext, where a ``$`` starts a
formula and a malformed one fails the page."""
import pytest

from qat_harness.writers import plots
from qat_harness.writers.trends import Point

MATH = r"$\frac{$ layer_$x^2$"


def test_a_report_figure_draws_dollar_signs_as_text():
    figure = plots.device_figure(plots.DeviceFigureData(
        latency_raw_ms={MATH: [1.0, 1.1, 0.9], "float": [2.0, 2.1, 1.9]},
        speedups=[plots.SpeedupBar(MATH, 2.0, 1.8, 2.2)], speedup_band=(1.5, 4.0),
        accuracy=[plots.AccuracyBar(MATH, 1.0, 0.95, 1.0)]))
    assert figure.startswith("data:image/png;base64,")


def test_a_history_figure_draws_dollar_signs_as_text():
    figure = plots.trend_figure(plots.TrendFigureData(
        night_labels=[MATH, "2026-01-02"], latency_ms={MATH: [Point(0, 1.0), Point(1, 1.1)]},
        speedup={"qat_vs_float": [Point(0, 2.0, 1.9, 2.1)]}, speedup_band=None,
        top1={"float": [Point(0, 0.9, 0.85, 0.95)]}, changes={1: f"openvino 1 -> {MATH}"}))
    assert figure.startswith("data:image/png;base64,")


def test_outside_text_only_matplotlib_would_have_failed():
    """The premise of the tests above: the same string does break mathtext."""
    import io

    plt = plots._pyplot()
    fig, ax = plt.subplots()
    ax.set_title(MATH)
    with pytest.raises(ValueError):
        fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
